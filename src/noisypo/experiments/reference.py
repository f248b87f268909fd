"""The controlled experiment written the plain way: one ``nn.Linear`` policy per run.

This is the loop a reader would write first, and the book keeps it for two
jobs: the tests check that the batched engine of
:mod:`noisypo.experiments.controlled` trains the same boundaries, and
``benchmarks/bench_controlled.py`` times both. It shares nothing with the
engine's training code: the policy is a two-output ``torch.nn.Linear``, the
loss is computed from log-softmax probabilities against a frozen copy (the
reference policy), and ``torch.optim.SGD`` applies autograd's gradient.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from noisypo.experiments.controlled import ControlledConfig, TrialData
from noisypo.losses import get_loss

__all__ = ["reference_runs", "train_linear_policy"]


def train_linear_policy(
    x: Tensor,
    s: Tensor,
    loss: str,
    *,
    beta: float,
    lr: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.nn.Linear:
    """Train a two-token softmax policy on one preference data set; return the reference too.

    Parameters
    ----------
    x
        Embeddings, shape (N, d).
    s
        Labels in {+1, -1}, shape (N,); +1 means token ``a`` (row 0) is preferred.
    loss
        GPO loss name (``"dpo"``, ``"ipo"``, ``"slic"``).
    beta, lr, steps
        Temperature, SGD learning rate and number of full-batch steps.
    generator
        Seeds the random initial weights (the reference policy).

    Returns
    -------
    tuple of torch.nn.Linear
        ``(policy, reference)``; ``Delta = (w_a - w_b) - (w_a - w_b)_ref``
        is ``(policy.weight[0] - policy.weight[1]) - (reference.weight[0] - reference.weight[1])``.
    """
    spec = get_loss(loss)
    policy = torch.nn.Linear(x.shape[-1], 2, bias=False, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        policy.weight.normal_(generator=generator)
    reference = copy.deepcopy(policy).requires_grad_(False)
    optimizer = torch.optim.SGD(policy.parameters(), lr=lr)
    preferred = torch.where(s > 0, 0, 1).unsqueeze(-1)  # (N, 1): row of the preferred token
    rejected = 1 - preferred
    for _ in range(steps):
        optimizer.zero_grad()
        log_ratio = torch.log_softmax(policy(x), dim=-1) - torch.log_softmax(reference(x), dim=-1)  # (N, 2)
        h = (log_ratio.gather(1, preferred) - log_ratio.gather(1, rejected)).squeeze(-1)  # (N,)
        spec.f(beta * h).mean().backward()
        optimizer.step()
    return policy, reference


def reference_runs(
    config: ControlledConfig,
    item: TrialData,
    n: int,
    trials: range | list[int] | None = None,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test one policy per (loss, trial, epsilon) in plain Python loops.

    Uses the data of :func:`noisypo.experiments.controlled.draw_datasets`, so
    the runs see exactly the engine's data sets and labels.

    Returns
    -------
    delta : numpy.ndarray
        Final ``Delta``, shape (n_losses, n_trials, n_eps, d).
    accuracy : numpy.ndarray
        Test accuracy on ``item.x_test``, shape (n_losses, n_trials, n_eps):
        the fraction of test points whose log-ratio margin under the trained
        policy is strictly positive for their class.
    """
    trials = list(range(config.trials) if trials is None else trials)
    generator = torch.Generator(device=item.x_train.device).manual_seed(seed)
    d = config.d
    half = item.x_test.shape[1] // 2
    shape = (len(config.losses), len(trials), len(config.epsilons))
    delta = np.zeros(shape + (d,))
    accuracy = np.zeros(shape)
    for loss_index, loss in enumerate(config.losses):
        for trial_position, trial in enumerate(trials):
            x = item.x_train[trial, :, :n].reshape(2 * n, d)
            x_test = item.x_test[trial]
            y_test = torch.cat([torch.ones(half), -torch.ones(half)]).to(x_test)
            for rate_index in range(len(config.epsilons)):
                s = item.labels[rate_index, trial, :, :n].reshape(2 * n)
                policy, reference = train_linear_policy(
                    x, s, loss, beta=config.beta, lr=config.lr, steps=config.epochs, generator=generator
                )
                with torch.no_grad():
                    log_ratio = torch.log_softmax(policy(x_test), -1) - torch.log_softmax(reference(x_test), -1)
                    margin = y_test * (log_ratio[:, 0] - log_ratio[:, 1])
                    weights = policy.weight - reference.weight
                accuracy[loss_index, trial_position, rate_index] = (margin > 0).double().mean().item()
                delta[loss_index, trial_position, rate_index] = (weights[0] - weights[1]).double().cpu().numpy()
    return delta, accuracy
