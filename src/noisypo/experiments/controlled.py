"""The controlled experiment: GPO training on two vMF classes under label noise.

One grid trains the last-layer model of :mod:`noisypo.dynamics` with DPO,
IPO and SLiC on ``n`` samples per class drawn from ``vMF(mu_+, kappa)`` and
``vMF(mu_-, kappa)`` on the sphere ``S^{d-1}``, with the class means at
angle ``phi`` (:func:`noisypo.vmf.two_class_means`). The labels are
corrupted by one of two noise models:

``"mislabeled"``
    Each label flips with probability ``epsilon``
    (:func:`noisypo.noise.flip_mask`).
``"uncertain"``
    The label is +1 with probability ``sigmoid(r*(x) / omega)`` for the
    Bayes log-odds ``r*(x) = kappa (mu_+ - mu_-) . x``
    (:func:`noisypo.noise.uncertain_labels`), with ``omega`` solved so
    that the expected noise rate equals ``epsilon``
    (:func:`noisypo.noise.omega_for_noise_rate`). ``epsilon = 0`` uses the
    Bayes labels ``sign(r*(x))`` (the limit ``omega -> 0``, whose noise
    rate is the Bayes risk) and ``epsilon = 1/2`` fair coins
    (``omega = inf``).

Every run starts at the reference policy (``Delta = 0``) and takes
``epochs`` full-batch gradient-descent steps
(:func:`noisypo.dynamics.gradient_descent`). Its test accuracy is measured
twice: on ``test_samples`` fresh points, half per class, and exactly, as
``1 - R`` with the population risk ``R`` of the boundary
(:func:`noisypo.risk.population_risk`).

The engine batches every trial, noise rate, loss and concentration of a
sample size into one call of the gradient descent. Randomness is shared
on purpose (common random numbers). For each concentration one generator
draws the training sets (``max(ns)`` points per class, of which a run with
``n`` uses the first ``n``), the test sets and one uniform per label. Every
noise rate and loss reuses them. Flip masks are therefore nested in
``epsilon``, and differences between curves are not sampling noise.

References
----------
S. Im and Y. Li, "How Well Can Preference Optimization Generalize Under
Noisy Feedback?", arXiv:2510.01458, 2025 (Section 4.1, Figure 4 and
Appendix D.1 describe the experiment; its values of d, kappa, phi, n and
the learning rate are not in the text available to this book, so the
defaults below are the book's own choices).
"""

from __future__ import annotations

import math
import struct
from collections import abc
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from noisypo import dynamics, noise, risk, vmf
from noisypo.losses import LOSSES, get_loss

__all__ = [
    "DTYPES",
    "NOISE_MODELS",
    "ControlledConfig",
    "ControlledResults",
    "TrialData",
    "draw_datasets",
    "epsilon_grid",
    "config_from_mapping",
    "exact_accuracy",
    "noise_levels",
    "run_controlled",
    "sampled_accuracy",
    "summarize",
    "sweep_configs",
    "train_grid",
]

NOISE_MODELS = ("mislabeled", "uncertain")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def epsilon_grid(step: float = 0.025, stop: float = 0.5) -> tuple[float, ...]:
    """Return the noise rates ``0, step, 2 step, ..., stop``, rounded to 12 decimals.

    Raises
    ------
    ValueError
        If ``step`` is not positive or ``stop`` is not a multiple of it
        in ``[0, 1]``.
    """
    if not (step > 0 and 0 <= stop <= 1):
        raise ValueError(f"invalid grid step={step!r}, stop={stop!r}: need step > 0 and 0 <= stop <= 1")
    count = round(stop / step)
    if abs(count * step - stop) > 1e-9:
        raise ValueError(f"stop={stop!r} is not a multiple of step={step!r}")
    return tuple(round(k * step, 12) for k in range(count + 1))


# --- The config --------------------------------------------------------------


@dataclass(frozen=True)
class ControlledConfig:
    """One grid of the controlled experiment; every field is part of the result's identity.

    The defaults are the book's paper-scale kappa sweep for mislabeled
    data. Lists are accepted and stored as tuples.
    """

    # Embedding dimension; the data live on the unit sphere S^{d-1}.
    d: int = 32
    # vMF concentrations, one curve each; gamma = kappa / d is the normalised one.
    kappas: tuple[float, ...] = (16.0, 32.0, 64.0, 128.0, 256.0)
    # Angle between the class means mu_+ and mu_-, in radians.
    phi: float = math.pi / 3
    # Training samples per class (N = 2n pairs); a grid may hold several.
    ns: tuple[int, ...] = (50,)
    # Noise rates epsilon of the grid (mislabeled: [0, 1]; uncertain: [0, 1/2]).
    epsilons: tuple[float, ...] = epsilon_grid(0.025, 0.5)
    # GPO losses by name, see noisypo.losses.LOSSES.
    losses: tuple[str, ...] = ("dpo", "ipo", "slic")
    # Independent data sets (trials) per configuration.
    trials: int = 100
    # Fresh test points per trial, half from each class (must be even).
    test_samples: int = 2000
    # GPO temperature: the margin is r = beta * s * Delta . x.
    beta: float = 0.1
    # Learning rate of gradient descent on W; the margins depend on lr and beta only via 2 lr beta^2.
    lr: float = 50.0
    # Full-batch gradient-descent steps (the "epochs" of the experiment).
    epochs: int = 10
    # Noise model: "mislabeled" (random flips) or "uncertain" (Bradley-Terry labels).
    noise: str = "mislabeled"
    # Mislabeled only: for epsilon > 1/2 flip the complement of the mask at 1 - epsilon.
    antithetic: bool = False
    # Also compute the exact accuracy 1 - R(Delta) with the risk integral.
    exact: bool = True
    # Seed of all randomness; each kappa derives its own generator from (seed, kappa).
    seed: int = 0
    # Torch device of the tensors ("cpu", "cuda", "cuda:1", ...).
    # NOTE: the tests run on CPU only; the CUDA path has not been run on a GPU yet.
    device: str = "cpu"
    # Floating-point type of data and training: "float32" or "float64".
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "d", _check_int("d", self.d, minimum=3))
        _set(self, "kappas", _check_positive_values("kappas", self.kappas))
        _set(self, "ns", tuple(_check_int("ns", n, minimum=1) for n in _check_sequence("ns", self.ns)))
        if len(set(self.ns)) != len(self.ns):
            raise ValueError(f"invalid ns={self.ns!r}: sample sizes must be distinct")
        phi = float(self.phi)
        if not (0.0 < phi <= math.pi):
            raise ValueError(f"invalid phi={self.phi!r}: the angle between the means must be in (0, pi]")
        _set(self, "phi", phi)
        _set(self, "epsilons", _check_epsilons(self.epsilons, self.noise))
        _set(self, "losses", _check_losses(self.losses))
        _set(self, "trials", _check_int("trials", self.trials, minimum=1))
        tests = _check_int("test_samples", self.test_samples, minimum=2)
        if tests % 2:
            raise ValueError(f"invalid test_samples={tests}: must be even (half per class)")
        _set(self, "test_samples", tests)
        _set(self, "beta", _check_positive_float("beta", self.beta))
        _set(self, "lr", _check_positive_float("lr", self.lr))
        _set(self, "epochs", _check_int("epochs", self.epochs, minimum=1))
        if self.antithetic not in (True, False):
            raise ValueError(f"invalid antithetic={self.antithetic!r}: expected True or False")
        if self.antithetic and self.noise != "mislabeled":
            raise ValueError("antithetic=True applies to mislabeled data only; set it to False")
        if self.exact not in (True, False):
            raise ValueError(f"invalid exact={self.exact!r}: expected True or False")
        _set(self, "seed", _check_int("seed", self.seed, minimum=0))
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"invalid device={self.device!r}: expected a torch device such as 'cpu' or 'cuda'") from None
        if self.dtype not in DTYPES:
            raise ValueError(f"invalid dtype={self.dtype!r}: expected one of {', '.join(DTYPES)}")

    @property
    def gammas(self) -> tuple[float, ...]:
        """Normalised concentrations ``gamma = kappa / d``, one per kappa."""
        return tuple(kappa / self.d for kappa in self.kappas)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by :attr:`dtype`."""
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON types (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def replace(self, **changes: Any) -> "ControlledConfig":
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _check_sequence(name: str, values: Any) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, (abc.Sequence, np.ndarray)):
        raise ValueError(f"invalid {name}={values!r}: expected a sequence")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    return values


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"invalid {name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _check_positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number > 0") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number > 0")
    return number


def _check_positive_values(name: str, values: Any) -> tuple[float, ...]:
    numbers = tuple(_check_positive_float(name, value) for value in _check_sequence(name, values))
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"invalid {name}={values!r}: values must be distinct")
    return numbers


def _check_epsilons(values: Any, noise_model: str) -> tuple[float, ...]:
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"invalid noise={noise_model!r}: expected one of {', '.join(NOISE_MODELS)}")
    rates = tuple(float(value) for value in _check_sequence("epsilons", values))
    upper = 1.0 if noise_model == "mislabeled" else 0.5
    for rate in rates:
        if not (0.0 <= rate <= upper):
            hint = " (uncertain labels never disagree with the class more than half the time)" if upper < 1 else ""
            raise ValueError(f"invalid epsilon={rate!r} for {noise_model} data: expected a rate in [0, {upper:g}]{hint}")
    if len(set(rates)) != len(rates):
        raise ValueError(f"invalid epsilons={values!r}: rates must be distinct")
    return rates


def _check_losses(values: Any) -> tuple[str, ...]:
    names = tuple(get_loss(name).name for name in _check_sequence("losses", values))
    if len(set(names)) != len(names):
        raise ValueError(f"invalid losses={values!r}: names must be distinct; known: {', '.join(LOSSES)}")
    return names


# --- Data: clean sets, test sets and noisy labels --------------------------------


@dataclass(frozen=True)
class TrialData:
    """Everything random of one concentration: all trials, shared by every epsilon, loss and n.

    Attributes
    ----------
    kappa
        The concentration.
    x_train
        Training embeddings, shape (trials, 2, max(ns), d); index 0 of the
        class axis is the ``mu_+`` class (clean label +1).
    x_test
        Test embeddings, shape (trials, test_samples, d); the first half
        comes from ``mu_+``.
    labels
        Noisy labels in {+1, -1}, shape (n_eps, trials, 2, max(ns)), in the
        config's dtype.
    omegas
        Uncertainty level per epsilon (0 for Bayes labels, ``inf`` for fair
        coins); NaN for mislabeled data.
    noise_rates
        Expected fraction of labels that disagree with the class, per epsilon.
    """

    kappa: float
    x_train: Tensor
    x_test: Tensor
    labels: Tensor
    omegas: np.ndarray
    noise_rates: np.ndarray


def _generator(config: ControlledConfig, kappa: float) -> torch.Generator:
    # The stream depends on (seed, kappa) only, so a configuration draws the
    # same data whichever other kappas run with it or were finished before.
    words = struct.unpack("<II", struct.pack("<d", kappa))
    state = np.random.SeedSequence([config.seed, *words]).generate_state(2, np.uint32)
    generator = torch.Generator(device=config.device)
    generator.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return generator


def _means(config: ControlledConfig) -> tuple[Tensor, Tensor]:
    return vmf.two_class_means(config.d, config.phi, dtype=config.torch_dtype, device=config.device)


def noise_levels(config: ControlledConfig, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(omegas, noise_rates)`` for each epsilon of the grid at one kappa.

    Mislabeled data: omegas are NaN and the noise rate is epsilon. Uncertain
    data: ``omega = 0`` (Bayes labels, noise rate = Bayes risk) at
    ``epsilon = 0``, ``omega = inf`` at 1/2, else the root of
    ``epsilon(omega) = epsilon``.

    Raises
    ------
    ValueError
        For uncertain data, if a positive epsilon is at or below the Bayes
        risk (no omega reaches it); the message gives the reachable range.
    """
    rates = np.asarray(config.epsilons, dtype=np.float64)
    if config.noise == "mislabeled":
        return np.full(rates.shape, np.nan), rates.copy()
    omegas = np.array([_omega(rate, config.d, kappa, config.phi) for rate in rates])
    bayes = risk.bayes_risk(config.d, kappa, config.phi)
    noise_rates = np.where(rates == 0.0, bayes, rates)
    return omegas, noise_rates


@lru_cache(maxsize=4096)
def _omega(epsilon: float, d: int, kappa: float, phi: float) -> float:
    if epsilon == 0.0:
        return 0.0
    if epsilon == 0.5:
        return math.inf
    key = f"d={d} kappa={kappa!r} phi={phi!r} epsilon={epsilon!r}"
    table = _omega_table()
    if key not in table:
        # Each root costs a few dozen quadratures (about a second on a
        # laptop CPU), so solved values are kept on disk across runs.
        table[key] = noise.omega_for_noise_rate(epsilon, d, kappa, phi)
        _save_omega_table(table)
    return table[key]


def _omega_path():
    from noisypo.paths import cache_dir

    return cache_dir("controlled") / "omega_for_noise_rate.json"


@lru_cache(maxsize=1)
def _omega_table() -> dict[str, float]:
    import json

    path = _omega_path()
    try:
        return {key: float(value) for key, value in json.loads(path.read_text("utf-8")).items()}
    except (OSError, ValueError):
        return {}


def _save_omega_table(table: dict[str, float]) -> None:
    import json
    import os

    path = _omega_path()
    temporary = path.with_suffix(f".{os.getpid()}.part")
    temporary.write_text(json.dumps(table, indent=0, sort_keys=True), "utf-8")
    os.replace(temporary, path)


def draw_datasets(config: ControlledConfig, kappa: float) -> TrialData:
    """Draw the training sets, test sets and noisy labels of every trial at one kappa.

    The draws come from a generator seeded by ``(config.seed, kappa)`` in a
    fixed order: training points, test points, then the uniforms of the
    labels. The result does not depend on the other kappas of the grid.
    """
    trials, n_max, half_test = config.trials, max(config.ns), config.test_samples // 2
    generator = _generator(config, kappa)
    mu_plus, mu_minus = _means(config)
    means = torch.stack([mu_plus, mu_minus]).expand(trials, 2, config.d)  # (T, 2, d)
    x_train = vmf.sample_vmf(means, kappa, n_max, generator=generator)  # (T, 2, n_max, d)
    x_test = vmf.sample_vmf(means, kappa, half_test, generator=generator)  # (T, 2, M/2, d)
    x_test = x_test.reshape(trials, 2 * half_test, config.d)  # (T, M, d)

    clean = torch.tensor([1.0, -1.0], dtype=config.torch_dtype, device=config.device)
    clean = clean.view(1, 2, 1).expand(trials, 2, n_max)  # (T, 2, n_max)
    omegas, noise_rates = noise_levels(config, kappa)
    if config.noise == "mislabeled":
        mask = noise.flip_mask(
            (trials, 2, n_max), config.epsilons, generator=generator,
            antithetic=config.antithetic, device=config.device,
        )  # (E, T, 2, n_max)
        labels = torch.where(mask, -clean, clean)
    else:
        reward = noise.vmf_log_odds(x_train, mu_plus, mu_minus, kappa)  # (T, 2, n_max)
        bayes_labels = torch.where(reward >= 0, 1.0, -1.0).to(config.torch_dtype)
        labels = bayes_labels.unsqueeze(0).repeat(len(config.epsilons), 1, 1, 1)  # (E, T, 2, n_max)
        positive = omegas > 0
        if positive.any():
            drawn = noise.uncertain_labels(
                reward, omegas[positive].tolist(), generator=generator, dtype=config.torch_dtype
            )  # (E+, T, 2, n_max)
            labels[torch.as_tensor(positive, device=labels.device)] = drawn
    return TrialData(float(kappa), x_train, x_test, labels, omegas, noise_rates)


# --- Training and evaluation --------------------------------------------------------


def train_grid(
    config: ControlledConfig,
    data: Sequence[TrialData],
    n: int,
    *,
    chunk_elements: int = 1 << 25,
) -> Tensor:
    """Train every loss, kappa, trial and epsilon at sample size ``n`` at once.

    Parameters
    ----------
    config
        The grid.
    data
        One :class:`TrialData` per kappa to train (any subset of the grid).
    n
        Samples per class; the first ``n`` of each class are used.
    chunk_elements
        Upper bound on the elements of the margin tensor. Data sets are
        split into chunks to respect it. Results of different chunk sizes
        agree to rounding, because the batched matrix products may sum in a
        different order.

    Returns
    -------
    torch.Tensor
        Final ``Delta`` of shape (n_losses, n_kappas, trials, n_eps, d).
    """
    if not 1 <= n <= max(config.ns):
        raise ValueError(f"invalid n={n!r}: the data hold at most {max(config.ns)} samples per class")
    x = torch.stack([item.x_train[:, :, :n] for item in data])  # (K, T, 2, n, d)
    labels = torch.stack([item.labels[..., :n] for item in data])  # (K, E, T, 2, n)
    kappas, rates, trials, d = x.shape[0], labels.shape[1], x.shape[1], x.shape[-1]
    x = x.reshape(kappas * trials, 2 * n, d)  # (B, N, d) with B = K * T
    s = labels.reshape(kappas, rates, trials, 2 * n).transpose(1, 2)  # (K, T, E, N)
    s = s.reshape(kappas * trials, rates, 2 * n)  # (B, E, N)
    specs = tuple(get_loss(name) for name in config.losses)

    per_set = len(specs) * rates * 2 * n
    chunk = max(1, chunk_elements // per_set)
    deltas = [
        _descend_shared_x(x[start:start + chunk], s[start:start + chunk], specs, config)
        for start in range(0, x.shape[0], chunk)
    ]
    delta = torch.cat(deltas, dim=1)  # (L, B, E, d)
    return delta.reshape(len(specs), kappas, trials, rates, d)


def _descend_shared_x(x: Tensor, s: Tensor, specs: tuple, config: ControlledConfig) -> Tensor:
    """Run gradient descent for many label vectors and losses on each data set.

    No validation: private kernel. ``x`` (B, N, d), ``s`` (B, E, N); returns
    ``Delta`` (L, B, E, d). The update is the one of
    :func:`noisypo.dynamics.gradient_descent`,
    ``Delta <- Delta - 2 lr (beta / N) sum_i f'(r_i) s_i x_i`` with
    ``r_i = beta s_i Delta . x_i``, but the E * L problems that share one
    data set are the columns of one matrix, so each step is two batched
    matrix products instead of a broadcast over a (L, B, E, N, d) tensor.
    The tests check it against that function and against an ``nn.Linear``
    policy trained by autograd.
    """
    sets, rates, count = s.shape
    losses = len(specs)
    columns = losses * rates
    s_columns = s.transpose(1, 2).repeat(1, 1, losses)  # (B, N, L*E), column l*E + e
    x_t = x.transpose(1, 2)  # (B, d, N)
    delta = torch.zeros(sets, x.shape[-1], columns, dtype=x.dtype, device=x.device)  # (B, d, L*E)
    step = 2.0 * config.lr * config.beta / count
    for _ in range(config.epochs):
        margin = config.beta * s_columns * torch.bmm(x, delta)  # (B, N, L*E)
        slope = torch.cat(
            [spec.f_prime(block) for spec, block in zip(specs, margin.split(rates, dim=-1))], dim=-1
        )  # f'(r), (B, N, L*E)
        delta = delta - step * torch.bmm(x_t, slope * s_columns)  # (B, d, L*E)
    return delta.reshape(sets, -1, losses, rates).permute(2, 0, 3, 1)  # (L, B, E, d)


def sampled_accuracy(x_test: Tensor, delta: Tensor) -> Tensor:
    """Return the fraction of test points on the correct side of each boundary.

    ``x_test`` has shape (T, M, d) with the ``mu_+`` half first, ``delta``
    shape (..., T, E, d); the result has shape (..., T, E). A point counts
    as correct when its margin ``s Delta . x`` is strictly positive, as in
    the risk ``R = P(r <= 0)``.
    """
    half = x_test.shape[-2] // 2
    scores = torch.einsum("tmd,...ted->...tem", x_test, delta)  # (..., T, E, M)
    sign = torch.ones(x_test.shape[-2], dtype=scores.dtype, device=scores.device)
    sign[half:] = -1.0
    return (scores * sign > 0).to(torch.float64).mean(dim=-1)


def exact_accuracy(config: ControlledConfig, kappa: float, delta: Tensor) -> np.ndarray:
    """Return ``1 - R(Delta)`` for boundaries ``delta`` (..., d) at one kappa (float64)."""
    mu_plus, mu_minus = _means(config)
    return 1.0 - risk.population_risk(
        delta.detach().to(torch.float64).cpu().numpy(),
        mu_plus.to(torch.float64).cpu().numpy(),
        mu_minus.to(torch.float64).cpu().numpy(),
        kappa,
    )


def _configuration_table(config: ControlledConfig, item: TrialData, delta: Tensor, n: int) -> pd.DataFrame:
    """Build the tidy table of one (n, kappa): one row per loss, trial and epsilon."""
    losses, trials, rates = len(config.losses), config.trials, len(config.epsilons)
    sampled = sampled_accuracy(item.x_test, delta).cpu().numpy()  # (L, T, E)
    if config.exact:
        exact = exact_accuracy(config, item.kappa, delta)  # (L, T, E)
    else:
        exact = np.full(sampled.shape, np.nan)
    mu_plus, mu_minus = _means(config)
    bayes_direction = (mu_plus - mu_minus) / torch.linalg.vector_norm(mu_plus - mu_minus)
    norms = torch.linalg.vector_norm(delta, dim=-1)
    cosine = ((delta @ bayes_direction) / torch.where(norms > 0, norms, 1.0)).cpu().numpy()

    clean = torch.tensor([1.0, -1.0], dtype=item.labels.dtype, device=item.labels.device).view(1, 1, 2, 1)
    flipped = (item.labels[..., :n] != clean).to(torch.float64).mean(dim=(-2, -1))  # (E, T)
    flipped = flipped.T.cpu().numpy()  # (T, E)

    loss_index, trial_index, rate_index = np.meshgrid(
        np.arange(losses), np.arange(trials), np.arange(rates), indexing="ij"
    )  # each (L, T, E)
    epsilons = np.asarray(config.epsilons)
    table = pd.DataFrame(
        {
            "noise": config.noise,
            "d": config.d,
            "phi": config.phi,
            "n": n,
            "kappa": item.kappa,
            "gamma": item.kappa / config.d,
            "loss": np.asarray(config.losses)[loss_index.ravel()],
            "epsilon": epsilons[rate_index.ravel()],
            "omega": item.omegas[rate_index.ravel()],
            "noise_rate": item.noise_rates[rate_index.ravel()],
            "trial": trial_index.ravel(),
            "flip_fraction": flipped[trial_index.ravel(), rate_index.ravel()],
            "accuracy_sampled": sampled.ravel(),
            "accuracy_exact": exact.ravel(),
            "cos_bayes": cosine.ravel(),
            "bayes_accuracy": 1.0 - risk.bayes_risk(config.d, item.kappa, config.phi),
        }
    )
    return table


# --- Running a grid ---------------------------------------------------------------


_GROUP_KEYS = ["noise", "d", "phi", "n", "kappa", "gamma", "loss", "epsilon"]


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """Return one row per configuration and epsilon with means and standard errors.

    The standard error is the sample standard deviation over trials divided
    by the square root of their number (NaN for a single trial).
    """
    grouped = trials.groupby(_GROUP_KEYS, sort=True)
    summary = grouped.agg(
        omega=("omega", "first"),
        noise_rate=("noise_rate", "first"),
        flip_fraction=("flip_fraction", "mean"),
        trials=("trial", "size"),
        accuracy_sampled=("accuracy_sampled", "mean"),
        accuracy_sampled_se=("accuracy_sampled", "sem"),
        accuracy_exact=("accuracy_exact", "mean"),
        accuracy_exact_se=("accuracy_exact", "sem"),
        cos_bayes=("cos_bayes", "mean"),
        bayes_accuracy=("bayes_accuracy", "first"),
    )
    return summary.reset_index()


@dataclass(frozen=True)
class ControlledResults:
    """Results of a grid: the trial table, its summary, the config and the timing."""

    config: ControlledConfig
    trials: pd.DataFrame
    summary: pd.DataFrame
    seconds: float = field(default=float("nan"))


def _part_key(n: int, kappa: float) -> str:
    return f"n={n}_kappa={kappa!r}"


def _describe_device(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    import os
    import platform

    return f"{device} ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def run_controlled(
    config: ControlledConfig,
    out: str | None = None,
    *,
    progress: bool = True,
    chunk_elements: int = 1 << 26,
) -> ControlledResults:
    """Run a whole grid, or finish an interrupted one, and return its results.

    Parameters
    ----------
    config
        The grid.
    out
        Results folder (see :mod:`noisypo.experiments.storage`). Finished
        configurations found there are skipped; each newly finished one is
        written as soon as it is done. ``None`` keeps everything in memory.
    progress
        Show a tqdm progress bar over the (n, kappa) configurations.
    chunk_elements
        Memory bound passed to :func:`train_grid`.

    Raises
    ------
    ValueError
        If CUDA is requested but not available, or ``out`` contains another grid.
    """
    import time

    from tqdm.auto import tqdm

    from noisypo.experiments.storage import ResultStore

    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} requested but CUDA is not available; use device='cpu'")
    started = time.perf_counter()
    store = ResultStore(out, config.to_dict(), device=_describe_device(config.device)) if out else None

    pending = {
        kappa: [n for n in config.ns if store is None or not store.has(_part_key(n, kappa))]
        for kappa in config.kappas
    }
    total = len(config.ns) * len(config.kappas)
    remaining = sum(len(ns) for ns in pending.values())
    bar = tqdm(total=total, initial=total - remaining, disable=not progress,
               desc=f"{config.noise} grid", unit="config")
    tables: list[pd.DataFrame] = []
    data = {kappa: draw_datasets(config, kappa) for kappa in config.kappas if pending[kappa]}
    for n in config.ns:
        batch = [data[kappa] for kappa in config.kappas if n in pending[kappa]]
        if not batch:
            continue
        bar.set_postfix_str(f"n={n}, {len(batch)} kappas")
        delta = train_grid(config, batch, n, chunk_elements=chunk_elements)  # (L, K, T, E, d)
        for index, item in enumerate(batch):
            table = _configuration_table(config, item, delta[:, index], n)
            if store is not None:
                store.save_part(_part_key(n, item.kappa), table)
            tables.append(table)
            bar.update(1)
    bar.close()

    trials = store.load_parts() if store is not None else pd.concat(tables, ignore_index=True)
    trials = trials.sort_values(["n", "kappa", "loss", "epsilon", "trial"], ignore_index=True)
    summary = summarize(trials)
    seconds = time.perf_counter() - started
    if store is not None:
        store.finish(trials, summary, seconds_last_run=round(seconds, 3))
    return ControlledResults(config, trials, summary, seconds)


def config_from_mapping(values: Mapping[str, Any], **overrides: Any) -> ControlledConfig:
    """Build a config from a mapping that may hold extra keys (they are ignored)."""
    names = ControlledConfig.__dataclass_fields__.keys()
    chosen = {key: value for key, value in values.items() if key in names}
    chosen.update(overrides)
    return ControlledConfig(**chosen)


def sweep_configs(
    sizes: Mapping[str, Any], noise_model: str, *, device: str = "cpu", seed: int = 0
) -> dict[str, ControlledConfig]:
    """Build the two grids of one noise model from a ``[controlled.*]`` profile table.

    Returns a dict with the ``"kappa"`` sweep (all ``kappas`` at ``n``) and
    the ``"n"`` sweep (all ``n_values`` at ``n_sweep_kappa``). For
    mislabeled data the kappa sweep covers epsilon in [0, 1], so that one
    grid gives both the curves over [0, 1/2] and the symmetry about 1/2.
    Because the masks are nested, its values below 1/2 are those of a grid
    that stops at 1/2. Every other sweep stops at 1/2.
    """
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"invalid noise model {noise_model!r}: expected one of {', '.join(NOISE_MODELS)}")
    base = ControlledConfig(
        d=sizes["d"],
        kappas=tuple(sizes["kappas"]),
        phi=math.radians(sizes[f"phi_{noise_model}_deg"]),
        ns=(sizes["n"],),
        epsilons=epsilon_grid(sizes["epsilon_step"], 0.5),
        trials=sizes["trials"],
        test_samples=sizes["test_samples"],
        beta=sizes["beta"],
        lr=sizes["lr"],
        epochs=sizes["epochs"],
        noise=noise_model,
        seed=seed,
        device=device,
        dtype=sizes["dtype"],
    )
    kappa_sweep = base
    if noise_model == "mislabeled":
        kappa_sweep = base.replace(epsilons=epsilon_grid(sizes["epsilon_step"], 1.0))
    return {
        "kappa": kappa_sweep,
        "n": base.replace(kappas=(float(sizes["n_sweep_kappa"]),), ns=tuple(sizes["n_values"])),
    }
