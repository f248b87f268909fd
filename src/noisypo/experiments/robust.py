"""Robust objectives beside DPO, IPO and SLiC: controlled vMF and fixed-backbone runs.

Both runners train the last-layer model of the book with full-batch
gradient descent (:func:`noisypo.dynamics.gradient_descent`) for a list of
*loss builders*. A builder maps the true flip rate epsilon of a data set to
the :class:`~noisypo.losses.GPOLoss` trained on it, so that an objective
can assume the right rate (``lambda e: robust_dpo(e)``), a wrong one
(``lambda e: robust_dpo(e / 2)``) or none (``lambda e: get_loss("dpo")``).

:func:`controlled_runs` draws the data with the controlled experiment's own
sampler (:func:`noisypo.experiments.controlled.draw_datasets`) and scores
each boundary with the exact risk integral. :func:`fixed_backbone_runs`
takes embeddings of real prompts, splits them into train and test sets,
injects random flips into the training labels and scores each boundary on
the clean test labels.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from noisypo import dynamics, noise
from noisypo.experiments import controlled
from noisypo.losses import GPOLoss

__all__ = ["LossBuilder", "capped", "controlled_runs", "fixed_backbone_runs", "mean_difference_accuracy"]

#: Maps the true flip rate of a data set to the loss trained on it. A builder
#: that returns the same object for every rate lets all rates train in one batch.
LossBuilder = Callable[[float], GPOLoss]

#: Assumed flip rates are capped here: rDPO is undefined at 1/2 and cDPO learns nothing there.
MAX_ASSUMED_RATE = 0.45


def capped(epsilon: float) -> float:
    """Return ``epsilon`` clipped to ``[0, MAX_ASSUMED_RATE]``."""
    return float(min(max(epsilon, 0.0), MAX_ASSUMED_RATE))


def _check_horizons(horizons: Sequence[int]) -> tuple[list[int], int]:
    steps = sorted({int(h) for h in horizons})
    if not steps or steps[0] < 1:
        raise ValueError(f"invalid horizons={horizons!r}: expected step counts >= 1")
    every = math.gcd(*steps)
    return steps, every


def _train(x, s, losses, *, beta, lr, horizons, every):
    """Train every loss on (x, s); return Delta at each horizon, (H, L, ..., d)."""
    result = dynamics.gradient_descent(
        x, s, losses, beta=beta, lr=lr, steps=horizons[-1], record_every=every
    )
    recorded = result.record_steps.tolist()
    picks = [recorded.index(h) for h in horizons]
    return result.trajectory.movedim(-2, 0)[picks]  # (H, L, ..., d)


def _train_grid(x, labels, builders, epsilons, *, beta, lr, horizons, every):
    """Train every builder at every rate; return Delta of shape (H, L, E, *batch, d).

    ``x`` (*batch, N, d) is shared by all rates and ``labels`` (E, *batch, N)
    holds one label set per rate. A builder that returns the same object
    for every rate trains all rates in one batched run; the others run
    once per rate.
    """
    names = list(builders)
    built = {name: [builders[name](float(e)) for e in epsilons] for name in names}
    static = [name for name in names if all(loss is built[name][0] for loss in built[name])]
    dynamic = [name for name in names if name not in static]
    parts = {}
    if static:
        run = _train(x.unsqueeze(0), labels, [built[name][0] for name in static],
                     beta=beta, lr=lr, horizons=horizons, every=every)  # (H, Ls, E, ..., d)
        parts.update({name: run[:, i] for i, name in enumerate(static)})
    if dynamic:
        per_rate = [
            _train(x, labels[e], [built[name][e] for name in dynamic], beta=beta, lr=lr,
                   horizons=horizons, every=every)  # (H, Ld, ..., d)
            for e in range(len(epsilons))
        ]
        stacked = torch.stack(per_rate, dim=2)  # (H, Ld, E, ..., d)
        parts.update({name: stacked[:, i] for i, name in enumerate(dynamic)})
    return torch.stack([parts[name] for name in names], dim=1)


def controlled_runs(
    config: controlled.ControlledConfig,
    kappa: float,
    builders: Mapping[str, LossBuilder],
    *,
    horizons: Sequence[int],
    n: int | None = None,
) -> pd.DataFrame:
    """Train each loss on the controlled experiment's data and return exact accuracies.

    Parameters
    ----------
    config
        The controlled grid: ``d``, ``phi``, ``epsilons``, ``trials``,
        ``beta``, ``lr`` and ``seed`` are used; ``losses`` and ``epochs``
        are ignored in favour of ``builders`` and ``horizons``.
    kappa
        The concentration.
    builders
        Label -> loss builder (see the module notes).
    horizons
        Step counts at which to score the boundary (the last is the run length).
    n
        Samples per class (default ``max(config.ns)``).

    Returns
    -------
    pandas.DataFrame
        One row per loss label, epsilon, horizon and trial with columns
        ``loss``, ``epsilon``, ``steps``, ``trial``, ``accuracy`` (1 - exact
        risk), ``cosine_to_dpo`` (cosine between the boundary and the one
        of the first builder at the same horizon) and ``cosine_to_first``
        (cosine between the boundary and the first-step direction ``m``).
    """
    steps, every = _check_horizons(horizons)
    n = max(config.ns) if n is None else int(n)
    data = controlled.draw_datasets(config, kappa)
    x = data.x_train[:, :, :n].reshape(config.trials, 2 * n, config.d)  # (T, N, d)
    labels = data.labels[..., :n].reshape(len(config.epsilons), config.trials, 2 * n)  # (E, T, N)
    names = list(builders)
    delta = _train_grid(x, labels, builders, config.epsilons, beta=config.beta, lr=config.lr,
                        horizons=steps, every=every)  # (H, L, E, T, d)
    accuracy = controlled.exact_accuracy(config, kappa, delta)  # (H, L, E, T)
    cosine = torch.nn.functional.cosine_similarity(delta, delta[:, :1].expand_as(delta), dim=-1)
    m = (labels.unsqueeze(-1) * x).mean(dim=-2)  # first-step direction, (E, T, d)
    to_first = torch.nn.functional.cosine_similarity(delta, m.expand_as(delta), dim=-1)  # (H, L, E, T)
    rows = []
    for h, horizon in enumerate(steps):
        for l, name in enumerate(names):
            for e, epsilon in enumerate(config.epsilons):
                for trial in range(config.trials):
                    rows.append((name, float(epsilon), horizon, trial, float(accuracy[h, l, e, trial]),
                                 float(cosine[h, l, e, trial]), float(to_first[h, l, e, trial])))
    columns = ["loss", "epsilon", "steps", "trial", "accuracy", "cosine_to_dpo", "cosine_to_first"]
    return pd.DataFrame(rows, columns=columns)


def _splits(labels: np.ndarray, splits: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified random train/test index sets, (S, N_train) and (S, N_test)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for _ in range(splits):
        tr, te = [], []
        for label in (1, -1):
            members = rng.permutation(np.flatnonzero(labels == label))
            cut = max(1, int(round(test_fraction * members.size)))
            te.append(members[:cut])
            tr.append(members[cut:])
        train.append(np.concatenate(tr))
        test.append(np.concatenate(te))
    return np.stack(train), np.stack(test)


def fixed_backbone_runs(
    x,
    labels,
    builders: Mapping[str, LossBuilder],
    epsilons: Sequence[float],
    *,
    horizons: Sequence[int],
    beta: float = 0.1,
    lr: float = 50.0,
    splits: int = 5,
    test_fraction: float = 0.1,
    seed: int = 0,
    center: bool = False,
) -> pd.DataFrame:
    """Train each loss on fixed embeddings with injected flips; return clean test accuracy.

    Parameters
    ----------
    x, labels
        Embeddings (n, d) and clean labels (n,) in {+1, -1}; rows are scaled
        to unit norm, as in the book's model.
    builders
        Label -> loss builder.
    epsilons
        Injected flip rates in [0, 1/2].
    horizons
        Step counts at which to score.
    beta, lr
        Temperature and learning rate of full-batch gradient descent.
    splits
        Random class-stratified train/test splits.
    test_fraction
        Share of each class held out for testing (0.1: the paper's 90/10).
    seed
        Seed of the splits and of the flips (nested masks over epsilon).
    center
        Subtract the mean of each training set from its training and test
        embeddings before the rows are scaled to unit norm. The book's model
        has no bias term, so without centring a shared offset of all
        embeddings turns any imbalance of the noisy labels into a shift of
        the boundary.

    Returns
    -------
    pandas.DataFrame
        Columns ``loss``, ``epsilon``, ``steps``, ``split``, ``accuracy``
        (fraction of test prompts with ``s Delta . x > 0``). The first-step
        boundary (the labelled mean ``m``) appears as loss ``"m"`` at
        ``steps = 0``.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    clean = np.asarray(labels).astype(np.int64)
    steps, every = _check_horizons(horizons)
    train, test = _splits(clean, splits, test_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    mask = noise.flip_mask(train.shape, list(epsilons), generator=generator)  # (E, S, N_train)
    s_clean = torch.as_tensor(clean, dtype=torch.float64)
    x_train, x_test = x[train], x[test]  # (S, N_train, d), (S, N_test, d)
    if center:
        offset = x_train.mean(dim=-2, keepdim=True)  # (S, 1, d)
        x_train, x_test = x_train - offset, x_test - offset
    x_train = x_train / x_train.norm(dim=-1, keepdim=True)
    x_test = x_test / x_test.norm(dim=-1, keepdim=True)
    s_train, s_test = s_clean[train], s_clean[test]
    s_noisy = torch.where(mask, -s_train, s_train)  # (E, S, N_train)
    m = (s_noisy[..., None] * x_train).mean(dim=-2)  # (E, S, d)
    first = (torch.einsum("snd,esd->esn", x_test, m) * s_test > 0).double().mean(-1)  # (E, S)
    delta = _train_grid(x_train, s_noisy, builders, list(epsilons), beta=beta, lr=lr,
                        horizons=steps, every=every)  # (H, L, E, S, d)
    correct = torch.einsum("snd,hlesd->hlesn", x_test, delta) * s_test > 0
    accuracy = correct.double().mean(-1)  # (H, L, E, S)
    names = list(builders)
    rows = []
    for e, epsilon in enumerate(epsilons):
        rows += [("m", float(epsilon), 0, split, float(first[e, split])) for split in range(splits)]
        for h, horizon in enumerate(steps):
            for l, name in enumerate(names):
                rows += [(name, float(epsilon), horizon, split, float(accuracy[h, l, e, split]))
                         for split in range(splits)]
    return pd.DataFrame(rows, columns=["loss", "epsilon", "steps", "split", "accuracy"])


def mean_difference_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the mean and standard error of accuracy per loss, epsilon and steps."""
    grouped = frame.groupby(["loss", "epsilon", "steps"])["accuracy"]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["sem"] = out["std"] / np.sqrt(out["count"])
    return out
