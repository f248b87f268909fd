"""A pre-training diagnostic: how much label noise can this preference data take?

Given embeddings ``x`` (n, d) with class labels ``s`` in {+1, -1}, the
diagnostic fits the book's two-class vMF model and predicts the accuracy of
the first GPO boundary as a function of the flip rate epsilon.

The model
---------
1. Geometry. Rows are scaled to unit norm. For each class the mean of the
   rows has squared length ``Rbar^2``; because
   ``E[Rbar^2] = A^2 + (1 - A^2) / n`` for ``n`` vMF samples with mean
   resultant length ``A = A_d(kappa)``, the diagnostic uses the
   bias-corrected ``A_hat^2 = (n Rbar^2 - 1) / (n - 1)`` and solves
   ``A_d(kappa) = A_hat`` (:func:`noisypo.vmf.kappa_from_mean_resultant`).
   The angle between the class means uses
   ``cos(phi) = xbar_+ . xbar_- / (A_hat_+ A_hat_-)`` (the two sample means
   are independent, so the numerator is unbiased). The uncorrected
   maximum-likelihood values of :func:`noisypo.vmf.fit_vmf` are reported
   beside them.
2. The first boundary. From the reference policy every GPO loss moves
   ``Delta`` along ``m = (1/N) sum_j s_j x_j`` with the noisy labels
   (see :mod:`noisypo.robust`: the direction does not depend on the loss).
   With ``n_+`` and ``n_-`` training samples, flip rate epsilon and class
   second moments ``S_c = E[w^2] mu_c mu_c^T + t_c (I - mu_c mu_c^T)``,
   ``t_c = (1 - E[w^2]) / (d - 1)``,

   .. math::

       E[m] = (1 - 2\\epsilon) (n_+ A_+ \\mu_+ - n_- A_- \\mu_-) / N, \\qquad
       \\mathrm{Cov}[m] = \\frac{1}{N^2} \\sum_c n_c
           \\bigl(S_c - (1 - 2\\epsilon)^2 A_c^2 \\mu_c \\mu_c^T\\bigr).

   The diagnostic draws ``m`` from the normal law with these moments (the
   central limit approximation): two coordinates in the plane of the means
   and the squared norm of the rest, ``(n_+ t_+ + n_- t_-) / N^2`` times a
   chi-square with ``d - 2`` degrees of freedom.
3. Predicted accuracy. For each draw, the exact vMF risk of the boundary
   ``sign(m . x)`` is
   ``pi_+ P(u . x < 0 | +) + pi_- P(u . x > 0 | -)`` with ``u = m / |m|``,
   each term from :func:`noisypo.risk.negative_side_probability`, and
   ``pi_c = n_c / N``. The predicted accuracy is one minus the mean risk
   over the draws. It is the expected accuracy of the first boundary in
   the fitted model, not of a boundary trained to convergence.
4. Guaranteed accuracy. The book's Lemma B.2 bound
   (:func:`noisypo.bounds_b2.cosine_lower_bound`, exact moments, pooled
   kappa, ``n = min(n_+, n_-)``) gives, with probability at least
   ``1 - delta``, a lower bound on the cosine between ``m`` and
   ``mu_+ - mu_-``. The guaranteed accuracy is the smallest accuracy of any
   boundary within that angle (worst orientation of the deviation), so
   it is a lower bound under the vMF model, and it is 0 where the lemma
   gives no bound.
5. Sample-size condition. :func:`required_samples` returns the ``n`` per
   class at which the book's Theorem 3.3 chain (first boundary) certifies
   the threshold accuracy, from :mod:`noisypo.bounds`, and the report gives
   the largest epsilon at which the available ``n`` meets it.
6. Noise tolerance. The largest epsilon (linearly interpolated on the grid)
   up to which an accuracy curve stays at or above the chosen threshold.

7. Effective dimension (default). Real embeddings are anisotropic, while
   a vMF spreads the tangential variance evenly over ``d - 1`` directions.
   :attr:`Geometry.spread_ratio` is the within-class variance of ``u . x``
   along the mean-difference direction ``u`` divided by the vMF value; far
   above 1, the classes overlap more along ``u`` than the model assumes and
   the ambient-dimension prediction is optimistic.
   :func:`effective_geometry` refits the vMF in the integer dimension
   ``d_eff <= d`` that matches this variance while keeping ``A_hat`` and
   ``phi``, and the predictions use that model. This moment matching is the
   book's own heuristic; ``dimension="ambient"`` keeps the plain fit.

What the model still ignores: the shape of the within-class law beyond
its mean and its variance along ``u``, unequal spreads beyond one kappa
per class, and the motion of the boundary after the first step.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from noisypo import bounds, bounds_b2, risk, vmf

__all__ = [
    "MIN_PER_CLASS",
    "Diagnosis",
    "EmbeddingData",
    "Geometry",
    "check_embeddings",
    "diagnose",
    "effective_geometry",
    "fit_geometry",
    "guaranteed_accuracy",
    "load_embeddings",
    "noise_tolerance",
    "plot_diagnosis",
    "predicted_accuracy",
    "required_samples",
]

#: Default minimum number of samples per class. Below about 10 the
#: bias-corrected resultant length is too noisy to give a usable kappa.
MIN_PER_CLASS = 10

#: Largest kappa at which noisypo.risk documents tested accuracy.
KAPPA_TESTED = 1e4

_X_KEYS = ("x", "embeddings", "embedding", "X")
_LABEL_KEYS = ("labels", "label", "s", "y")
_GRID_POINTS = 1025


class DiagnosticInputError(ValueError):
    """Embeddings or labels that the diagnostic cannot use."""


# --- input ------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingData:
    """Embeddings with class labels, as loaded from a file or a persona behaviour."""

    x: np.ndarray  # (n, d) float64, rows as stored (not normalised)
    labels: np.ndarray  # (n,) int8 in {+1, -1}
    source: str  # file path or "persona:<behaviour>@<model>"


def _labels_to_signs(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DiagnosticInputError(f"labels must be one-dimensional, got shape {raw.shape}")
    if raw.dtype == bool:
        return np.where(raw, 1, -1).astype(np.int8)
    if not np.issubdtype(raw.dtype, np.number):
        raise DiagnosticInputError(f"labels must be numeric or boolean, got dtype {raw.dtype}")
    values = raw.astype(np.float64)
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DiagnosticInputError(f"labels contain non-finite values (first at index {bad})")
    present = set(np.unique(values).tolist())
    if present <= {-1.0, 1.0}:
        return values.astype(np.int8)
    if present <= {0.0, 1.0}:
        return np.where(values > 0, 1, -1).astype(np.int8)
    shown = sorted(present)[:6]
    raise DiagnosticInputError(
        f"labels must take the values +1/-1 or 1/0, got {shown}{' ...' if len(present) > 6 else ''}"
    )


def check_embeddings(x, labels, *, min_per_class: int = MIN_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Validate embeddings and labels; return unit rows and labels in {+1, -1}.

    Parameters
    ----------
    x
        Array of shape (n, d), d >= 3.
    labels
        Array of shape (n,) with values +1/-1, 1/0 or True/False (+1 is the
        class whose mean is ``mu_+``).
    min_per_class
        Smallest accepted number of samples in each class (>= 2).

    Returns
    -------
    (x_unit, s)
        ``x_unit`` (n, d) float64 with unit rows, ``s`` (n,) int8.

    Raises
    ------
    DiagnosticInputError
        (a ``ValueError``) on a wrong shape, mismatched lengths, non-finite
        values, a zero row, labels that are not binary, a single class, or
        fewer than ``min_per_class`` samples in a class.
    """
    if int(min_per_class) < 2:
        raise DiagnosticInputError(f"invalid min_per_class={min_per_class}: need at least 2")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DiagnosticInputError(f"embeddings must have shape (n, d), got shape {x.shape}")
    if x.shape[1] < 3:
        raise DiagnosticInputError(f"embeddings need dimension d >= 3, got d = {x.shape[1]}")
    s = _labels_to_signs(labels)
    if s.shape[0] != x.shape[0]:
        raise DiagnosticInputError(
            f"mismatched lengths: {x.shape[0]} embeddings but {s.shape[0]} labels; "
            "pass one label per row"
        )
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise DiagnosticInputError(
            f"embeddings contain NaN or inf in {rows.size} row(s), first at row {int(rows[0])}; "
            "drop or recompute those rows"
        )
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise DiagnosticInputError(f"embedding row {int(np.flatnonzero(norms == 0)[0])} is zero")
    counts = {label: int(np.sum(s == label)) for label in (1, -1)}
    if min(counts.values()) == 0:
        only = 1 if counts[1] else -1
        raise DiagnosticInputError(
            f"only one class present (all {s.size} labels are {only:+d}); the diagnostic needs both"
        )
    small = {label: count for label, count in counts.items() if count < min_per_class}
    if small:
        described = ", ".join(f"{count} with label {label:+d}" for label, count in small.items())
        raise DiagnosticInputError(
            f"too few samples: {described}; need at least {min_per_class} per class "
            "(lower min_per_class only if you accept a noisy kappa estimate)"
        )
    return x / norms[:, None], s


def _pick(keys: tuple[str, ...], available, requested: str | None, what: str, source: str) -> str:
    if requested is not None:
        if requested not in available:
            raise DiagnosticInputError(
                f"{source}: no {what} named {requested!r}; available: {', '.join(map(str, available))}"
            )
        return requested
    for key in keys:
        if key in available:
            return key
    raise DiagnosticInputError(
        f"{source}: found no {what} (looked for {', '.join(keys)}); available: "
        f"{', '.join(map(str, available))}. Name it explicitly"
    )


def _load_parquet(path: Path, x_key: str | None, labels_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    frame = pd.read_parquet(path)
    label_column = _pick(_LABEL_KEYS, list(frame.columns), labels_key, "label column", str(path))
    labels = frame[label_column].to_numpy()
    list_columns = [key for key in _X_KEYS if key in frame.columns]
    if x_key is not None or list_columns:
        column = _pick(_X_KEYS, list(frame.columns), x_key, "embedding column", str(path))
        try:
            x = np.stack([np.asarray(row, dtype=np.float64) for row in frame[column]])
        except ValueError as error:
            raise DiagnosticInputError(
                f"{path}: embedding column {column!r} must hold equal-length numeric vectors ({error})"
            ) from None
        return x, labels
    rest = frame.drop(columns=[label_column]).select_dtypes(include="number")
    if rest.shape[1] == 0:
        raise DiagnosticInputError(f"{path}: no numeric embedding columns besides {label_column!r}")
    return rest.to_numpy(dtype=np.float64), labels


def load_embeddings(
    source: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    x_key: str | None = None,
    labels_key: str | None = None,
    model_id: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> EmbeddingData:
    """Load embeddings and labels from a file or compute them for a persona behaviour.

    Parameters
    ----------
    source
        One of

        * a ``.npz`` file with an embedding array (key ``x``, ``embeddings``,
          ``embedding`` or ``X``) and a label array (``labels``, ``label``,
          ``s`` or ``y``);
        * a ``.npy`` file with the (n, d) embeddings, together with
          ``labels`` (a ``.npy`` file or a text file of one label per line);
        * a ``.parquet`` file with a label column and either one column of
          vectors (named as above) or one numeric column per dimension;
        * a persona behaviour name (see :data:`noisypo.persona.BEHAVIOURS`),
          embedded with :func:`noisypo.embeddings.persona_embeddings`.
    labels
        Label file for a ``.npy`` source.
    x_key, labels_key
        Array or column names that override the defaults above.
    model_id, limit, seed
        Passed to :func:`noisypo.embeddings.persona_embeddings` for a
        behaviour name.

    Raises
    ------
    DiagnosticInputError
        If the file is missing or malformed, or the name is neither a file
        nor a persona behaviour.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in {".npz", ".npy", ".parquet", ".pq"}:
        if not path.is_file():
            raise DiagnosticInputError(f"embedding file not found: {path}")
        if suffix in {".npz", ".npy"} and not _is_numpy_file(path):
            raise DiagnosticInputError(f"{path} is not a valid {suffix} file (NumPy's np.save/np.savez)")
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                x = archive[_pick(_X_KEYS, keys, x_key, "embedding array", str(path))]
                raw = archive[_pick(_LABEL_KEYS, keys, labels_key, "label array", str(path))]
        elif suffix == ".npy":
            if labels is None:
                raise DiagnosticInputError(
                    f"{path} contains only the embeddings; pass the labels file too "
                    "(--labels FILE), or store both in one .npz"
                )
            x = np.load(path, allow_pickle=False)
            label_path = Path(os.fspath(labels)).expanduser()
            if not label_path.is_file():
                raise DiagnosticInputError(f"label file not found: {label_path}")
            if label_path.suffix.lower() == ".npy":
                raw = np.load(label_path, allow_pickle=False)
            else:
                raw = np.loadtxt(label_path, ndmin=1)
        else:
            x, raw = _load_parquet(path, x_key, labels_key)
        return EmbeddingData(np.asarray(x, dtype=np.float64), _labels_to_signs(raw), str(path))

    from noisypo import persona

    behaviour = persona.PAPER_BEHAVIOURS.get(text, text)
    if behaviour not in persona.BEHAVIOURS:
        raise DiagnosticInputError(
            f"{text!r} is neither an embedding file (.npz, .npy, .parquet) nor a persona behaviour; "
            f"known behaviours: {', '.join(persona.BEHAVIOURS)}"
        )
    from noisypo.embeddings import persona_embeddings

    data = persona_embeddings(behaviour, model_id, limit=limit, seed=seed)
    return EmbeddingData(
        np.asarray(data.x, dtype=np.float64),
        np.asarray(data.labels, dtype=np.int8),
        f"persona:{behaviour}@{data.model}",
    )


# --- geometry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """The two-class vMF model fitted to labelled unit embeddings.

    ``*_plus`` / ``*_minus`` refer to the classes with labels +1 / -1.
    """

    d: int
    n_plus: int
    n_minus: int
    kappa_plus: float  # bias-corrected concentration of the + class
    kappa_minus: float
    kappa: float  # pooled: solves A_d(kappa) = sample-weighted mean of the corrected A
    phi: float  # bias-corrected angle between the class means, radians
    kappa_plus_mle: float  # uncorrected maximum-likelihood values (noisypo.vmf.fit_vmf)
    kappa_minus_mle: float
    phi_raw: float  # angle between the sample means
    spread_ratio: float  # empirical / vMF within-class variance of u . x, u the mean-difference direction
    projected_variance: float = math.nan  # empirical within-class variance of u . x (mean of the classes)
    resultant_plus: float = math.nan  # bias-corrected mean resultant lengths A_hat
    resultant_minus: float = math.nan

    @property
    def n(self) -> int:
        """Total number of samples."""
        return self.n_plus + self.n_minus

    @property
    def gamma(self) -> float:
        """Normalised pooled concentration kappa / d."""
        return self.kappa / self.d


def _is_numpy_file(path: Path) -> bool:
    """Return True when the file starts like a .npy array or a .npz (zip) archive."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    return head.startswith(b"\x93NUMPY") or head.startswith(b"PK")


def _corrected_resultant(mean: np.ndarray, n: int) -> float:
    squared = (n * float(mean @ mean) - 1.0) / (n - 1.0)
    return math.sqrt(max(squared, 0.0))


def _kappa(d: int, resultant: float, label: str) -> float:
    if resultant <= 0.0:
        warnings.warn(
            f"class {label}: the bias-corrected mean resultant length is 0 (no concentration); "
            "using kappa = 0",
            RuntimeWarning,
            stacklevel=3,
        )
        return 0.0
    return float(vmf.kappa_from_mean_resultant(d, min(resultant, 1.0 - 1e-12)))


def _vmf_projection_variance(d: int, kappa: float, c: float) -> float:
    # Var(u . x) for x ~ vMF(mu, kappa), u . mu = c:
    # c^2 Var(w) + (1 - c^2) (1 - E[w^2]) / (d - 1).
    mean, second = vmf.w_moments(d, kappa)
    return float(c**2 * (second - mean**2) + (1 - c**2) * (1 - second) / (d - 1))


def fit_geometry(x, labels, *, min_per_class: int = MIN_PER_CLASS) -> Geometry:
    """Fit the two-class vMF model (bias-corrected kappa per class and phi).

    See the module notes for the estimators. Input is validated with
    :func:`check_embeddings`.
    """
    x, s = check_embeddings(x, labels, min_per_class=min_per_class)
    d = x.shape[1]
    plus, minus = x[s == 1], x[s == -1]
    mean_plus, mean_minus = plus.mean(axis=0), minus.mean(axis=0)
    a_plus = _corrected_resultant(mean_plus, plus.shape[0])
    a_minus = _corrected_resultant(mean_minus, minus.shape[0])
    kappa_plus = _kappa(d, a_plus, "+1")
    kappa_minus = _kappa(d, a_minus, "-1")
    pooled = (plus.shape[0] * a_plus + minus.shape[0] * a_minus) / x.shape[0]
    kappa = _kappa(d, pooled, "pooled")

    raw_cos = float(mean_plus @ mean_minus / (np.linalg.norm(mean_plus) * np.linalg.norm(mean_minus)))
    if a_plus > 0 and a_minus > 0:
        cos_phi = float(mean_plus @ mean_minus) / (a_plus * a_minus)
    else:
        cos_phi = raw_cos
    phi = math.acos(min(max(cos_phi, -1.0), 1.0))
    if phi == 0.0:
        warnings.warn(
            "the class means coincide after bias correction (phi = 0): the labels are not "
            "linearly predictable in this model and every prediction is 1/2",
            RuntimeWarning,
            stacklevel=2,
        )

    difference = mean_plus - mean_minus
    u = difference / np.linalg.norm(difference)
    empirical = 0.5 * (np.var(plus @ u, ddof=1) + np.var(minus @ u, ddof=1))
    c = math.sin(phi / 2)
    model = 0.5 * (_vmf_projection_variance(d, kappa_plus, c) + _vmf_projection_variance(d, kappa_minus, c))

    return Geometry(
        d=d,
        n_plus=int(plus.shape[0]),
        n_minus=int(minus.shape[0]),
        kappa_plus=kappa_plus,
        kappa_minus=kappa_minus,
        kappa=kappa,
        phi=phi,
        kappa_plus_mle=float(vmf.fit_vmf(plus).kappa),
        kappa_minus_mle=float(vmf.fit_vmf(minus).kappa),
        phi_raw=math.acos(min(max(raw_cos, -1.0), 1.0)),
        spread_ratio=float(empirical / model) if model > 0 else math.inf,
        projected_variance=float(empirical),
        resultant_plus=a_plus,
        resultant_minus=a_minus,
    )


def effective_geometry(geometry: Geometry) -> Geometry:
    """Return the vMF model refitted in an effective dimension that matches the spread along u.

    A vMF spreads the tangential variance evenly over ``d - 1`` directions.
    Real embeddings concentrate it in a few, and the risk of a boundary
    depends on the spread along its normal. The effective model keeps the
    bias-corrected mean resultant lengths ``A_hat`` and the angle ``phi``
    and chooses the integer dimension ``d_eff`` in ``[3, d]`` whose vMF
    (with ``kappa`` re-solved from ``A_d_eff(kappa) = A_hat``) has the
    within-class variance of ``u . x`` closest to the measured one. With
    ``spread_ratio <= 1`` it returns ``geometry`` unchanged.

    This moment matching is the book's own heuristic, not part of the
    paper's theory.
    """
    if not (geometry.spread_ratio > 1 and math.isfinite(geometry.projected_variance)):
        return geometry
    c = math.sin(geometry.phi / 2)
    pooled = (geometry.n_plus * geometry.resultant_plus + geometry.n_minus * geometry.resultant_minus) / geometry.n

    def refit(d: int) -> tuple[float, float, float, float]:
        kappa_plus = _kappa(d, geometry.resultant_plus, "+1")
        kappa_minus = _kappa(d, geometry.resultant_minus, "-1")
        variance = 0.5 * (_vmf_projection_variance(d, kappa_plus, c) + _vmf_projection_variance(d, kappa_minus, c))
        return variance, kappa_plus, kappa_minus, _kappa(d, pooled, "pooled")

    # The model variance falls as d grows; bisect for the measured value.
    # fit_geometry has already warned about any class with kappa = 0.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _match_dimension(geometry, refit)


def _match_dimension(geometry: Geometry, refit) -> Geometry:
    low, high = 3, geometry.d
    if refit(low)[0] <= geometry.projected_variance:
        high = low
    while high - low > 1:
        middle = (low + high) // 2
        if refit(middle)[0] >= geometry.projected_variance:
            low = middle
        else:
            high = middle
    candidates = {low, high}
    best = min(candidates, key=lambda d: abs(refit(d)[0] - geometry.projected_variance))
    variance, kappa_plus, kappa_minus, kappa = refit(best)
    if best == geometry.d:
        return geometry
    return replace(
        geometry, d=best, kappa_plus=kappa_plus, kappa_minus=kappa_minus, kappa=kappa,
        spread_ratio=geometry.projected_variance / variance,
    )


# --- predictions -------------------------------------------------------------------------


def _check_epsilons(epsilons) -> np.ndarray:
    eps = np.atleast_1d(np.asarray(epsilons, dtype=np.float64))
    if eps.ndim != 1 or eps.size == 0:
        raise ValueError("epsilons must be a non-empty one-dimensional sequence")
    if not np.all((eps >= 0) & (eps <= 0.5)):
        raise ValueError(f"invalid epsilons: every flip rate must lie in [0, 1/2], got {eps.min()}..{eps.max()}")
    return eps


def _train_counts(geometry: Geometry, train_fraction: float) -> tuple[int, int]:
    if not (0 < train_fraction <= 1):
        raise ValueError(f"invalid train_fraction={train_fraction!r}: expected a value in (0, 1]")
    return (
        max(1, round(train_fraction * geometry.n_plus)),
        max(1, round(train_fraction * geometry.n_minus)),
    )


class _ClassRisk:
    """P(u . x < 0) of one class as a function of c = u . mu, tabulated once."""

    def __init__(self, d: int, kappa: float, low: float, high: float) -> None:
        self.grid = np.linspace(low, high, _GRID_POINTS)
        self.values = risk.negative_side_probability(self.grid, d, kappa)

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return np.interp(c, self.grid, self.values)


def predicted_accuracy(
    geometry: Geometry, epsilons, *, train_fraction: float = 1.0, draws: int = 4000, seed: int = 0
) -> np.ndarray:
    """Return the model's expected accuracy of the first GPO boundary at each flip rate.

    Parameters
    ----------
    geometry
        The fitted model (:func:`fit_geometry`).
    epsilons
        Flip rates in [0, 1/2].
    train_fraction
        Fraction of the samples that train the boundary (0.9 for a 90/10
        split); the test prior is the class balance of all samples.
    draws
        Monte-Carlo draws of ``m`` per flip rate (the same normal draws are
        reused for every rate).
    seed
        Seed of the draws.

    Returns
    -------
    numpy.ndarray
        Accuracies, shape of ``epsilons``.

    Notes
    -----
    See the module notes (steps 2 and 3) for the model.
    """
    eps = _check_epsilons(epsilons)
    n_plus, n_minus = _train_counts(geometry, train_fraction)
    total = n_plus + n_minus
    d, half = geometry.d, geometry.phi / 2
    mu = {1: np.array([math.cos(half), math.sin(half)]), -1: np.array([math.cos(half), -math.sin(half)])}
    counts = {1: n_plus, -1: n_minus}
    kappas = {1: geometry.kappa_plus, -1: geometry.kappa_minus}
    resultant, second, tangential = {}, {}, {}
    for label in (1, -1):
        a, w2 = vmf.w_moments(d, kappas[label])
        resultant[label], second[label] = float(a), float(w2)
        tangential[label] = (1.0 - float(w2)) / (d - 1)

    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((int(draws), 2))  # (K, 2)
    chi2 = rng.chisquare(d - 2, size=int(draws)) if d > 2 else np.zeros(int(draws))  # (K,)
    outside = sum(counts[c] * tangential[c] for c in (1, -1)) / total**2 * chi2  # |m_perp|^2, (K,)

    cosines = []
    for e in eps:
        signal = 1.0 - 2.0 * e
        mean = sum(c * counts[c] * resultant[c] * mu[c] for c in (1, -1)) * signal / total  # (2,)
        cov = np.zeros((2, 2))
        for c in (1, -1):
            second_moment = second[c] * np.outer(mu[c], mu[c]) + tangential[c] * (np.eye(2) - np.outer(mu[c], mu[c]))
            cov += counts[c] * (second_moment - signal**2 * resultant[c] ** 2 * np.outer(mu[c], mu[c]))
        cov /= total**2
        plane = mean + normal @ np.linalg.cholesky(cov + 1e-300 * np.eye(2)).T  # (K, 2)
        norm = np.sqrt((plane**2).sum(axis=1) + outside)
        c_plus = plane @ mu[1] / norm  # u . mu_+
        c_minus = -(plane @ mu[-1]) / norm  # (-u) . mu_-
        cosines.append((c_plus, c_minus))

    all_plus = np.concatenate([c for c, _ in cosines])
    all_minus = np.concatenate([c for _, c in cosines])
    risk_plus = _ClassRisk(d, geometry.kappa_plus, all_plus.min(), all_plus.max())
    risk_minus = _ClassRisk(d, geometry.kappa_minus, all_minus.min(), all_minus.max())
    prior = geometry.n_plus / geometry.n
    out = np.empty(eps.shape)
    for index, (c_plus, c_minus) in enumerate(cosines):
        risks = prior * risk_plus(c_plus) + (1 - prior) * risk_minus(c_minus)
        out[index] = 1.0 - risks.mean()
    return out


def guaranteed_accuracy(
    geometry: Geometry, epsilons, *, delta: float = 0.05, train_fraction: float = 1.0, orientations: int = 33
) -> np.ndarray:
    """Return an accuracy that the first boundary reaches with probability >= 1 - delta (vMF model).

    Uses the book's Lemma B.2 cosine bound (exact moments, pooled kappa,
    ``n = min(n_+, n_-)`` training samples per class). A boundary whose
    normal makes angle ``theta`` with ``mu_+ - mu_-`` has class cosines
    ``cos(theta) sin(phi/2) +/- sin(theta) cos(psi) cos(phi/2)`` for some
    orientation ``psi`` of the deviation; the result is the smallest
    accuracy over ``psi``. Where the lemma gives no bound (or epsilon = 1/2)
    the value is 0.
    """
    eps = _check_epsilons(epsilons)
    n_plus, n_minus = _train_counts(geometry, train_fraction)
    n = min(n_plus, n_minus)
    out = np.zeros(eps.shape)
    if geometry.kappa <= 0 or geometry.phi <= 0:
        return out
    below = eps < 0.5
    bound = np.full(eps.shape, -1.0)
    bound[below] = bounds_b2.cosine_lower_bound(
        n, eps[below], geometry.d, geometry.kappa, geometry.phi, delta, exact_moments=True
    )
    valid = bound > 0
    if not valid.any():
        return out
    theta = np.arccos(np.clip(bound[valid], -1.0, 1.0))[:, None]  # (E, 1)
    psi = np.linspace(0.0, math.pi, int(orientations))[None, :]  # (1, P)
    half = geometry.phi / 2
    tilt = np.sin(theta) * np.cos(psi) * math.cos(half)
    c_plus = np.cos(theta) * math.sin(half) + tilt
    c_minus = np.cos(theta) * math.sin(half) - tilt
    prior = geometry.n_plus / geometry.n
    risk_plus = risk.negative_side_probability(c_plus, geometry.d, geometry.kappa_plus)
    risk_minus = risk.negative_side_probability(c_minus, geometry.d, geometry.kappa_minus)
    out[valid] = 1.0 - (prior * risk_plus + (1 - prior) * risk_minus).max(axis=1)
    return out


def required_samples(geometry: Geometry, epsilons, *, threshold: float, delta: float = 0.05) -> np.ndarray:
    """Return the theorem's sample size per class for accuracy ``threshold`` at each flip rate.

    The book's Theorem 3.3 chain for the first boundary (training time 0):
    :func:`noisypo.bounds.angle_for_risk` gives the largest angle ``psi`` to
    ``mu_+ - mu_-`` at which the Chernoff risk bound is at most
    ``1 - threshold``, and :func:`noisypo.bounds.sample_size_closed_form`
    the ``n`` per class at which the closed-form Lemma B.2 bound puts ``m``
    within ``psi`` with probability at least ``1 - delta``. The values grow
    like ``1 / (1 - 2 epsilon)^2``; they are ``inf`` at epsilon = 1/2 or
    when even the Bayes direction's bound misses the target.
    """
    eps = _check_epsilons(epsilons)
    out = np.full(eps.shape, np.inf)
    if geometry.kappa <= 0 or geometry.phi <= 0:
        return out
    psi = bounds.angle_for_risk(1.0 - threshold, geometry.d, geometry.kappa, geometry.phi)
    below = eps < 0.5
    if psi <= 0 or not below.any():
        return out
    out[below] = bounds.sample_size_closed_form(eps[below], geometry.d, geometry.kappa, geometry.phi, delta, psi)
    return out


def noise_tolerance(epsilons, accuracy, threshold: float) -> float:
    """Return the largest flip rate up to which ``accuracy`` stays >= ``threshold``.

    Scans the grid from epsilon = 0 and interpolates linearly at the first
    crossing. Returns NaN when the accuracy at the first grid point is
    already below the threshold, and the last grid point when it never drops.
    """
    eps = np.asarray(epsilons, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if eps.shape != acc.shape or eps.ndim != 1:
        raise ValueError(f"epsilons and accuracy must be 1-D of equal length, got {eps.shape} and {acc.shape}")
    if not (0 < threshold < 1):
        raise ValueError(f"invalid threshold={threshold!r}: expected an accuracy in (0, 1)")
    below = np.flatnonzero(acc < threshold)
    if below.size == 0:
        return float(eps[-1])
    first = int(below[0])
    if first == 0:
        return math.nan
    e0, e1, a0, a1 = eps[first - 1], eps[first], acc[first - 1], acc[first]
    return float(e0 + (a0 - threshold) * (e1 - e0) / (a0 - a1))


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """The diagnostic's report for one data set."""

    source: str
    geometry: Geometry  # fitted in the ambient dimension
    model: Geometry  # the geometry the predictions use (ambient or effective dimension)
    threshold: float
    delta: float
    train_fraction: float
    epsilons: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)  # expected accuracy of the first boundary
    guaranteed: np.ndarray = field(repr=False)  # accuracy reached with probability >= 1 - delta
    tolerance: float  # largest epsilon with predicted accuracy >= threshold (NaN if none)
    guaranteed_tolerance: float  # the same for the guaranteed accuracy
    required_n: np.ndarray = field(default=None, repr=False)  # theorem's n per class for the threshold
    n_train: int = 0  # training samples per class the condition is checked against (the smaller class)
    sample_size_tolerance: float = math.nan  # largest epsilon with required_n <= n_train

    def to_dict(self) -> dict:
        """Return a JSON-ready dictionary of the report."""
        geometry = asdict(self.geometry)
        geometry.update(n=self.geometry.n, gamma=self.geometry.gamma)
        model = asdict(self.model)
        model.update(n=self.model.n, gamma=self.model.gamma)
        return {
            "source": self.source,
            "geometry": geometry,
            "model": model,
            "threshold": self.threshold,
            "delta": self.delta,
            "train_fraction": self.train_fraction,
            "epsilons": self.epsilons.tolist(),
            "predicted_accuracy": self.predicted.tolist(),
            "guaranteed_accuracy": self.guaranteed.tolist(),
            "tolerance": None if math.isnan(self.tolerance) else self.tolerance,
            "guaranteed_tolerance": None if math.isnan(self.guaranteed_tolerance) else self.guaranteed_tolerance,
            "required_n_per_class": [None if not math.isfinite(v) else v for v in np.asarray(self.required_n).tolist()],
            "n_train_per_class": self.n_train,
            "sample_size_tolerance": None if math.isnan(self.sample_size_tolerance) else self.sample_size_tolerance,
        }

    def summary(self) -> str:
        """Return a plain-text report."""
        g = self.geometry

        def rate(value: float) -> str:
            return "none (below the threshold even without noise)" if math.isnan(value) else f"{value:.3f}"

        lines = [
            f"source: {self.source}",
            f"n = {g.n} ({g.n_plus} with label +1, {g.n_minus} with label -1), d = {g.d}",
            f"kappa = {g.kappa:.4g} (gamma = kappa/d = {g.gamma:.4g}); per class +1: {g.kappa_plus:.4g}, "
            f"-1: {g.kappa_minus:.4g} (uncorrected MLE {g.kappa_plus_mle:.4g}, {g.kappa_minus_mle:.4g})",
            f"phi = {g.phi:.4f} rad = {math.degrees(g.phi):.2f} deg (between sample means: "
            f"{math.degrees(g.phi_raw):.2f} deg)",
            f"spread ratio along the mean difference (data / vMF): {g.spread_ratio:.3g}",
            (
                f"prediction model: effective dimension d_eff = {self.model.d} with kappa = {self.model.kappa:.4g} "
                f"(per class {self.model.kappa_plus:.4g}, {self.model.kappa_minus:.4g}), matching the spread along "
                "the mean difference"
                if self.model is not g
                else "prediction model: the vMF fit in the ambient dimension"
                + ("  <- the data spread more along the mean difference than this model; predictions are optimistic"
                   if g.spread_ratio > 2 else "")
            ),
            f"predicted accuracy without noise: {self.predicted[0]:.4f}; at epsilon = "
            f"{self.epsilons[len(self.epsilons) // 2]:.3f}: {self.predicted[len(self.epsilons) // 2]:.4f}",
            f"noise tolerance at accuracy >= {self.threshold:g}: predicted {rate(self.tolerance)}; "
            f"guaranteed with probability {1 - self.delta:g} (Lemma B.2 bound): {rate(self.guaranteed_tolerance)}",
            (
                f"theorem's sample-size condition (first boundary, probability {1 - self.delta:g}): "
                + (
                    f"n per class >= {self.required_n[0]:.3g} at epsilon = 0; "
                    if math.isfinite(self.required_n[0])
                    else "no n reaches the threshold (even the Bayes direction's risk bound misses it); "
                )
                + f"with {self.n_train} per class it holds "
                + (
                    f"up to epsilon = {self.sample_size_tolerance:.3f}"
                    if not math.isnan(self.sample_size_tolerance)
                    else "at no flip rate (it fails even without noise)"
                )
            ),
        ]
        if max(self.model.kappa_plus, self.model.kappa_minus) > KAPPA_TESTED:
            lines.append(
                f"note: kappa above {KAPPA_TESTED:g} lies outside the range in which "
                "noisypo.risk.negative_side_probability is tested"
            )
        return "\n".join(lines)


def diagnose(
    x,
    labels,
    *,
    threshold: float = 0.9,
    epsilons=None,
    delta: float = 0.05,
    train_fraction: float = 1.0,
    min_per_class: int = MIN_PER_CLASS,
    draws: int = 4000,
    seed: int = 0,
    source: str = "array",
    center: bool = False,
    dimension: str = "effective",
) -> Diagnosis:
    """Fit the vMF model to labelled embeddings and predict their noise tolerance.

    Parameters
    ----------
    x, labels
        Embeddings (n, d) and labels (n,) (see :func:`check_embeddings`).
    threshold
        Accuracy in (0, 1) that defines the noise tolerance.
    epsilons
        Flip-rate grid in [0, 1/2], increasing; default 0, 0.01, ..., 0.5.
    delta
        Failure probability of the guaranteed accuracy, in (0, 1).
    train_fraction
        Fraction of the samples that will train the model.
    min_per_class
        Smallest accepted class size.
    draws, seed
        Monte-Carlo draws and seed of :func:`predicted_accuracy`.
    source
        Label of the data in the report.
    center
        Subtract the mean of all rows (after scaling them to unit norm)
        before the fit, for a model trained on centred embeddings. The
        book's model has no bias term, so without centring a shared offset
        of the embeddings plus an imbalance of the noisy labels shifts the
        boundary, and the prediction includes that effect.
    dimension
        ``"effective"`` (default): predict with :func:`effective_geometry`,
        the vMF refitted in the dimension that matches the measured spread
        along the mean difference. ``"ambient"``: predict with the vMF fit
        in the embedding dimension, as the paper's model does.

    Returns
    -------
    Diagnosis

    Raises
    ------
    ValueError
        On invalid data (see :func:`check_embeddings`) or parameters.

    Examples
    --------
    >>> import torch
    >>> from noisypo.vmf import sample_vmf, two_class_means
    >>> mu_plus, mu_minus = two_class_means(16, 1.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.cat([sample_vmf(mu_plus, 40.0, 200, generator=g), sample_vmf(mu_minus, 40.0, 200, generator=g)])
    >>> report = diagnose(x.numpy(), [1] * 200 + [-1] * 200, threshold=0.8)
    >>> 0.0 < report.tolerance < 0.5
    True
    """
    if not (0 < threshold < 1):
        raise ValueError(f"invalid threshold={threshold!r}: expected an accuracy in (0, 1)")
    if not (0 < delta < 1):
        raise ValueError(f"invalid delta={delta!r}: expected a probability in (0, 1)")
    if center:
        x, _ = check_embeddings(x, labels, min_per_class=min_per_class)
        x = x - x.mean(axis=0)
    eps = _check_epsilons(np.linspace(0.0, 0.5, 51) if epsilons is None else epsilons)
    if np.any(np.diff(eps) <= 0):
        raise ValueError("epsilons must be strictly increasing")
    if dimension not in ("effective", "ambient"):
        raise ValueError(f"invalid dimension={dimension!r}: expected 'effective' or 'ambient'")
    geometry = fit_geometry(x, labels, min_per_class=min_per_class)
    model = effective_geometry(geometry) if dimension == "effective" else geometry
    predicted = predicted_accuracy(model, eps, train_fraction=train_fraction, draws=draws, seed=seed)
    guaranteed = guaranteed_accuracy(model, eps, delta=delta, train_fraction=train_fraction)
    required = required_samples(model, eps, threshold=threshold, delta=delta)
    n_train = min(_train_counts(geometry, train_fraction))
    holds = required <= n_train
    if not holds[0]:
        sample_tolerance = math.nan
    elif holds.all():
        sample_tolerance = float(eps[-1])
    else:
        sample_tolerance = float(eps[int(np.flatnonzero(~holds)[0]) - 1])
    return Diagnosis(
        source=source,
        geometry=geometry,
        model=model,
        threshold=float(threshold),
        delta=float(delta),
        train_fraction=float(train_fraction),
        epsilons=eps,
        predicted=predicted,
        guaranteed=guaranteed,
        tolerance=noise_tolerance(eps, predicted, threshold),
        guaranteed_tolerance=noise_tolerance(eps, guaranteed, threshold),
        required_n=required,
        n_train=n_train,
        sample_size_tolerance=sample_tolerance,
    )


def plot_diagnosis(diagnosis: Diagnosis, ax=None):
    """Plot predicted and guaranteed accuracy against the flip rate; return the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    eps = diagnosis.epsilons
    ax.plot(eps, diagnosis.predicted, color="C0", label="predicted (expected, vMF model)")
    ax.plot(eps, diagnosis.guaranteed, color="C1", linestyle="--",
            label=f"guaranteed w.p. {1 - diagnosis.delta:g} (Lemma B.2)")
    ax.axhline(diagnosis.threshold, color="grey", linewidth=0.8, linestyle=":")
    if not math.isnan(diagnosis.tolerance):
        ax.axvline(diagnosis.tolerance, color="C0", linewidth=0.8, linestyle=":")
    ax.set_xlabel(r"flip rate $\epsilon$")
    ax.set_ylabel("accuracy")
    ax.set_xlim(eps[0], eps[-1])
    ax.set_ylim(0.0, 1.02)
    ax.legend(loc="lower left", frameon=False)
    return fig
