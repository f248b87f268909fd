"""Preference pairs built from persona records, their split and their noise.

A persona record becomes one preference pair

* ``prompt``: :func:`noisypo.prompts.format_prompt` of the question,
  ``"{question}\\nAnswer:"``;
* ``chosen``: ``answer_matching_behavior`` (``" Yes"`` or ``" No"``);
* ``rejected``: ``answer_not_matching_behavior``.

The clean label of a pair is ``s = +1`` when the chosen answer is ``" Yes"``
and ``s = -1`` when it is ``" No"``, the convention of
:attr:`noisypo.persona.PersonaRecord.label` and of the embedding cache.

Noise never touches the prompts. A noisy training set swaps ``chosen`` and
``rejected`` on a subset of pairs, so its label is ``-s`` there. Two noise
models choose the subset:

mislabeled
    Each pair flips independently with probability epsilon, using the nested
    masks of :func:`noisypo.noise.flip_mask`.
uncertain
    The recipe for real data: a linear reward ``r*(x)`` is fitted to the
    clean labels on the model's embeddings, and the label is redrawn with
    ``P(s = +1) = sigmoid(r*(x) / omega)``, with omega chosen so that the
    mean flip probability matches epsilon
    (:func:`noisypo.noise.fit_linear_reward`,
    :func:`noisypo.noise.omega_for_flip_rate`,
    :func:`noisypo.noise.uncertain_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from noisypo.persona import ANSWERS, PersonaRecord
from noisypo.prompts import TEMPLATE, format_prompt

COLUMNS = ("question", "prompt", "chosen", "rejected", "label")
TEST_FRACTION = 0.1


def preference_pairs(records: Sequence[PersonaRecord], template: str = TEMPLATE) -> pd.DataFrame:
    """Build one preference pair per persona record.

    Parameters
    ----------
    records
        Persona records, e.g. from :func:`noisypo.persona.load_behaviour`.
    template
        Prompt template passed to :func:`noisypo.prompts.format_prompt`.

    Returns
    -------
    pandas.DataFrame
        Columns ``question``, ``prompt``, ``chosen``, ``rejected`` and
        ``label`` (int8, +1 when the chosen answer is ``" Yes"``), one row
        per record in the input order.

    Raises
    ------
    ValueError
        If ``records`` is empty or a record's answers are not ``" Yes"`` and
        ``" No"``.
    """
    if len(records) == 0:
        raise ValueError("records is empty: pass the records of one behaviour")
    rows = []
    for index, record in enumerate(records):
        answers = {record.answer_matching_behavior, record.answer_not_matching_behavior}
        if answers != set(ANSWERS):
            raise ValueError(
                f"record {index}: answers must be ' Yes' and ' No', got "
                f"{record.answer_matching_behavior!r} and {record.answer_not_matching_behavior!r}"
            )
        rows.append(
            (
                record.question,
                format_prompt(record.question, template),
                record.answer_matching_behavior,
                record.answer_not_matching_behavior,
                record.label,
            )
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["label"] = frame["label"].astype(np.int8)
    return frame


def stratified_split(
    labels, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test sets with the same class balance.

    Within each class the indices are permuted with ``numpy.random.default_rng(seed)``
    and the first ``round(test_fraction * n_class)`` go to the test set, so
    the split depends only on the labels and the seed.

    Parameters
    ----------
    labels
        Array-like of class labels, shape (n,).
    test_fraction
        Fraction of each class held out, in (0, 1).
    seed
        Seed of the permutation.

    Returns
    -------
    (train_index, test_index)
        Sorted int64 arrays that partition ``range(n)``.

    Raises
    ------
    ValueError
        If ``test_fraction`` is outside (0, 1), or a class would leave the
        train or the test set empty.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_parts = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        n_test = int(round(test_fraction * members.size))
        if n_test == 0 or n_test == members.size:
            raise ValueError(
                f"class {value!r} has {members.size} samples: test_fraction={test_fraction} leaves "
                "its train or test part empty; use more samples or another fraction"
            )
        test_parts.append(rng.permutation(members)[:n_test])
    test_index = np.sort(np.concatenate(test_parts)).astype(np.int64)
    train_mask = np.ones(labels.size, dtype=bool)
    train_mask[test_index] = False
    return np.flatnonzero(train_mask).astype(np.int64), test_index


def flip_pairs(pairs: pd.DataFrame, flip) -> pd.DataFrame:
    """Swap ``chosen`` and ``rejected`` where ``flip`` is true.

    Parameters
    ----------
    pairs
        A frame from :func:`preference_pairs` (or a subset of its rows).
    flip
        Boolean array-like of shape (len(pairs),).

    Returns
    -------
    pandas.DataFrame
        A copy with the answers swapped and ``label`` negated on flipped
        rows, plus the boolean column ``flipped``.
    """
    flip = np.asarray(flip, dtype=bool)
    if flip.shape != (len(pairs),):
        raise ValueError(f"flip must have shape ({len(pairs)},), got {flip.shape}")
    noisy = pairs.copy()
    chosen = pairs["chosen"].to_numpy()
    rejected = pairs["rejected"].to_numpy()
    noisy["chosen"] = np.where(flip, rejected, chosen)
    noisy["rejected"] = np.where(flip, chosen, rejected)
    noisy["label"] = np.where(flip, -pairs["label"].to_numpy(), pairs["label"].to_numpy()).astype(np.int8)
    noisy["flipped"] = flip
    return noisy


def mislabeled_masks(n: int, epsilons, *, seed: int = 0, antithetic: bool = True) -> np.ndarray:
    """Draw nested flip masks for the mislabeled noise model.

    Thin wrapper of :func:`noisypo.noise.flip_mask` with a seeded
    generator: one uniform per pair, shared by every epsilon, so the masks
    are nested in epsilon.

    Returns
    -------
    numpy.ndarray
        Boolean array of shape (len(epsilons), n).
    """
    from noisypo import noise

    generator = torch.Generator().manual_seed(int(seed))
    masks = noise.flip_mask((int(n),), _as_epsilons(epsilons), generator=generator, antithetic=antithetic)
    return masks.cpu().numpy().astype(bool)


@dataclass(frozen=True)
class UncertainNoise:
    """Flip masks of the uncertain noise model and the quantities behind them.

    Attributes
    ----------
    masks
        Boolean array (n_eps, n): the pairs whose redrawn label differs from
        the clean one.
    omegas
        Uncertainty level chosen for each epsilon (``inf`` at 1/2, ``0`` at 0).
    flip_probabilities
        Array (n_eps, n): P(flip) of each pair, ``sigmoid(-s r*(x) / omega)``.
    rewards
        The fitted linear reward r*(x), shape (n,).
    """

    masks: np.ndarray
    omegas: np.ndarray
    flip_probabilities: np.ndarray
    rewards: np.ndarray


def uncertain_masks(
    x, labels, epsilons, *, train_index=None, seed: int = 0, tol: float = 1e-3, rewards=None
) -> UncertainNoise:
    """Draw flip masks for the uncertain noise model on real embeddings.

    The linear reward r*(x) is fitted with :func:`noisypo.noise.fit_linear_reward`
    (binary cross-entropy, full-batch Adam, 500 epochs, learning rate 0.01)
    on all rows of ``x`` with their clean labels: it plays the unknown true
    reward, so it may see the test rows. For each epsilon,
    :func:`noisypo.noise.omega_for_flip_rate` finds omega such that the mean
    flip probability ``sigmoid(-s r*(x) / omega)`` over the rows in
    ``train_index`` is within ``tol`` of epsilon, and
    :func:`noisypo.noise.uncertain_labels` redraws those rows' labels.
    All epsilons share one uniform per row (common random numbers).

    Two limits have no finite omega: an epsilon at or below the fraction
    of training rows that r* misclassifies takes ``omega = 0`` (the label
    becomes the sign of r*), and epsilon = 1/2 takes ``omega = inf`` (a
    fair coin).

    Parameters
    ----------
    x
        Raw embeddings, shape (n, d).
    labels
        Clean labels in {+1, -1}, shape (n,).
    epsilons
        Target noise rates in [0, 1/2].
    train_index
        Rows that receive noisy labels (default: all).
    seed
        Seed of the label draws.
    tol
        Tolerance on the mean flip probability.
    rewards
        The rewards r*(x) of all rows, shape (n,), from an earlier call
        (``UncertainNoise.rewards``); skips the fit, which depends only on
        ``x`` and ``labels``.

    Returns
    -------
    UncertainNoise
        Masks and probabilities of shape (n_eps, len(train_index)).
    """
    from noisypo import noise

    epsilons = _as_epsilons(epsilons)
    if np.any(epsilons > 0.5):
        raise ValueError(
            f"uncertain noise rates must lie in [0, 1/2], got max {epsilons.max()}: redrawing labels "
            "with a positive omega flips at most half of them on average"
        )
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    if x.ndim != 2 or labels_t.shape != (x.shape[0],):
        raise ValueError(
            f"x must be (n, d) and labels (n,), got {tuple(x.shape)} and {tuple(labels_t.shape)}"
        )
    train_index = np.arange(x.shape[0]) if train_index is None else np.asarray(train_index)

    if rewards is None:
        rewards = noise.fit_linear_reward(x, labels_t)(x).detach()
    rewards = torch.as_tensor(np.asarray(rewards), dtype=torch.float64)  # (n,)
    if rewards.shape != labels_t.shape:
        raise ValueError(f"rewards must have shape {tuple(labels_t.shape)}, got {tuple(rewards.shape)}")
    train_rewards = rewards[train_index]
    train_labels = labels_t[train_index]
    margins = (train_labels * train_rewards).numpy()
    floor = float(np.mean(margins < 0) + 0.5 * np.mean(margins == 0))

    omegas = np.empty(epsilons.size)
    for k, epsilon in enumerate(epsilons):
        if epsilon >= 0.5:
            omegas[k] = np.inf
        elif epsilon <= floor + tol:
            omegas[k] = 0.0
        else:
            omegas[k] = noise.omega_for_flip_rate(train_rewards, train_labels, float(epsilon), tol=tol)

    # omega = 0 is the limit of a tiny omega: sigmoid(r / omega) is then 0 or 1 for r != 0.
    positive = np.where(omegas == 0.0, 1e-30 * max(float(np.abs(margins).max()), 1.0), omegas)
    generator = torch.Generator().manual_seed(int(seed))
    drawn = noise.uncertain_labels(train_rewards, positive, generator=generator)  # (n_eps, n_train)
    masks = (drawn != train_labels.unsqueeze(0)).numpy()
    probabilities = noise.uncertain_flip_probability(train_rewards, train_labels, positive).numpy()
    return UncertainNoise(
        masks=masks,
        omegas=omegas,
        flip_probabilities=probabilities,
        rewards=rewards.numpy(),
    )


def _as_epsilons(epsilons) -> np.ndarray:
    values = np.atleast_1d(np.asarray(epsilons, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"epsilons must be a non-empty 1-D sequence, got shape {values.shape}")
    if np.any((values < 0) | (values > 1)) or not np.all(np.isfinite(values)):
        raise ValueError(f"noise rates must lie in [0, 1], got {values.tolist()}")
    return values


def to_dataset(pairs: pd.DataFrame):
    """Return a Hugging Face ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected``.

    This is the "standard" (not conversational) preference format that TRL's
    ``DPOTrainer`` accepts.
    """
    from datasets import Dataset

    missing = [column for column in ("prompt", "chosen", "rejected") if column not in pairs]
    if missing:
        raise ValueError(f"pairs lack the columns {missing}; build them with preference_pairs")
    return Dataset.from_dict({column: pairs[column].tolist() for column in ("prompt", "chosen", "rejected")})
