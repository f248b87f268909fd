"""Noisy preference labels: random flips and uncertain (Bradley-Terry) labels.

Two noise models act on the labels ``s`` in {+1, -1} of a preference data
set (+1: response *a* preferred, the class of ``mu_plus``).

Random flips (rate ``epsilon``)
    Every label is flipped independently with probability ``epsilon``:
    ``s_noisy = -s`` when ``U < epsilon`` and ``s`` otherwise, with one
    uniform ``U`` per label. The mask is drawn once and applied to the clean
    labels. Drawing a fresh *random label* with probability ``epsilon``
    instead would flip only ``epsilon / 2`` of them.

Uncertain labels (temperature ``omega``)
    The label is +1 with probability ``sigmoid(r*(x) / omega)`` for a true
    reward ``r*``. On two vMF classes with common concentration ``kappa``
    the true reward is the Bayes log-odds

    .. math:: r^*(x) = \\log\\frac{p_+(x)}{p_-(x)} = \\kappa\\,(\\mu_+ - \\mu_-)\\cdot x,

    and the expected fraction of labels that disagree with their class is

    .. math::

        \\epsilon(\\omega) = \\mathbb{E}_{x \\sim \\mathrm{vMF}(\\mu_+, \\kappa)}
            \\bigl[\\sigma(-r^*(x) / \\omega)\\bigr]
          = \\mathbb{E}\\bigl[\\sigma(-2 \\kappa c\\, u\\cdot x / \\omega)\\bigr],

    with ``u`` the unit normal of ``mu_plus - mu_minus`` and
    ``c = u . mu_plus = sin(phi / 2)`` (the minus class gives the same value
    by reflection). :func:`uncertain_noise_rate` evaluates it by quadrature
    and :func:`omega_for_noise_rate` inverts it.

Common random numbers
    :func:`flip_mask` and :func:`uncertain_labels` draw one uniform per
    label and reuse it for every rate in a batch, so curves over ``epsilon``
    or ``omega`` move smoothly and the masks are nested.

References
----------
S. Im and Y. Li, "How Well Can Preference Optimization Generalize Under
Noisy Feedback?", arXiv:2510.01458, 2025 (Definitions 3.1 and 3.2,
Appendix D.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy import optimize, special

# Uniforms are drawn as integers in [0, 2**LATTICE_BITS) and a rate is
# rounded to the same lattice, so a comparison involves no float rounding.
# Two rates that sum to 1 up to float rounding then get complementary
# thresholds unless eps * 2**40 lies within about 1e-4 of a half-integer.
# No rate with at most four decimals (grids in steps of 0.05 or 0.025) does.
LATTICE_BITS = 40
_LATTICE = 1 << LATTICE_BITS

__all__ = [
    "LATTICE_BITS",
    "LinearReward",
    "bhattacharyya_coefficient",
    "fit_linear_reward",
    "flip_mask",
    "mean_flip_probability",
    "mislabel",
    "omega_for_flip_rate",
    "omega_for_noise_rate",
    "uncertain_flip_probability",
    "uncertain_labels",
    "uncertain_noise_rate",
    "uncertain_noise_rate_bound",
    "vmf_log_odds",
]


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _as_1d(values, name: str, expected: str) -> tuple[np.ndarray, bool]:
    """Return values as a non-empty 1-D float64 array and whether the input was a scalar."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D sequence, got shape {array.shape}")
    scalar = array.ndim == 0
    array = np.atleast_1d(array)
    if array.size == 0:
        raise ValueError(f"{name} is empty: pass at least one {expected}")
    return array, scalar


def _check_rates(epsilon, name: str = "epsilon") -> tuple[np.ndarray, bool]:
    """Return the rates as a 1-D float64 array and whether the input was a scalar."""
    rates, scalar = _as_1d(epsilon, name, "rate in [0, 1]")
    bad = ~((rates >= 0.0) & (rates <= 1.0))  # also catches NaN
    if bad.any():
        raise ValueError(
            f"invalid {name}={rates[bad][0]!r}: a flip rate must lie in [0, 1]"
        )
    return rates, scalar


def _check_omegas(omega) -> tuple[np.ndarray, bool]:
    values, scalar = _as_1d(omega, "omega", "positive temperature")
    bad = ~(values > 0.0)  # also catches NaN
    if bad.any():
        raise ValueError(
            f"invalid omega={values[bad][0]!r}: the uncertainty level must be > 0 "
            "(omega -> 0 gives noiseless Bayes labels, omega = inf a fair coin)"
        )
    return values, scalar


def _check_labels(labels, name: str = "labels") -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold +1 and -1, got a bool tensor")
    valid = (labels == 1) | (labels == -1)
    if not bool(valid.all()):
        bad = labels[~valid].flatten()[0].item()
        raise ValueError(f"invalid label {bad!r} in {name}: labels must be +1 or -1")
    return labels


def _check_vmf_setting(d, kappa, phi) -> tuple[int, float, float]:
    if int(d) != d or d < 3:
        raise ValueError(f"invalid dimension d={d!r}: need an integer d >= 3")
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"invalid kappa={kappa!r}: the concentration must be finite and > 0")
    if not (0.0 < phi <= math.pi):
        raise ValueError(f"invalid phi={phi!r}: the angle between the class means must be in (0, pi]")
    return int(d), float(kappa), float(phi)


# --------------------------------------------------------------------------
# Random flips (Definition 3.1)
# --------------------------------------------------------------------------


def _thresholds(rates: np.ndarray) -> torch.Tensor:
    # Exact: multiplying by a power of two does not round.
    return torch.as_tensor(np.rint(rates * _LATTICE).astype(np.int64))


def flip_mask(
    shape: int | Sequence[int],
    epsilons,
    *,
    generator: torch.Generator | None = None,
    antithetic: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw flip masks for many flip rates from one uniform per label.

    Parameters
    ----------
    shape
        Shape of the label tensor (for example ``(trials, N)``).
    epsilons
        A rate or a 1-D sequence of rates in [0, 1].
    generator
        Source of randomness; the same seed gives the same masks.
    antithetic
        ``False`` (default): label ``i`` is flipped at rate ``eps`` iff
        ``U_i < eps``, so the masks are nested (``eps <= eps'`` implies
        ``mask(eps) <= mask(eps')``). ``True``: the same rule for
        ``eps <= 1/2`` and the complement rule ``U_i >= 1 - eps`` for
        ``eps > 1/2``, so ``mask(1 - eps) == ~mask(eps)`` exactly for every
        ``eps != 1/2``. Nesting then holds on each half only: no family of
        masks can be both nested and complementary.
    device
        Device of the result (default: the generator's device, else CPU).

    Returns
    -------
    torch.Tensor
        Bool tensor of shape ``(n_eps, *shape)``; a scalar rate gives
        ``n_eps = 1``.

    Notes
    -----
    ``U_i`` is an integer drawn uniformly from ``[0, 2**40)`` and a rate is
    rounded to ``T(eps) = round(eps * 2**40)``. The flip probability is
    ``T(eps) / 2**40``, within ``2**-41`` of ``eps``. The antithetic rule
    compares with ``T(1 - eps)``, so the complement is exact bit for bit
    whenever the two rates of a pair round to thresholds that add up to
    ``2**40``. That holds for grids such as ``np.linspace(0, 1, 41)``, whose
    pairs need not sum to exactly 1 in floating point (see the comment at
    ``LATTICE_BITS``). Each flip is a Bernoulli(``eps``) draw independent
    across labels; only the draws for different rates are coupled.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> masks = flip_mask((4, 1000), [0.1, 0.9], generator=g, antithetic=True)
    >>> bool((masks[1] == ~masks[0]).all())
    True
    """
    rates, _ = _check_rates(epsilons, "epsilons")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"invalid shape {shape}: sizes must be >= 0")

    draw_device = generator.device if generator is not None else (device or "cpu")
    uniforms = torch.randint(
        0, _LATTICE, shape, generator=generator, dtype=torch.int64, device=draw_device
    )  # (*shape)
    thresholds = _thresholds(rates).to(draw_device)  # (n_eps,)
    view = (-1,) + (1,) * len(shape)
    lower = uniforms.unsqueeze(0) < thresholds.view(view)  # (n_eps, *shape)
    if antithetic:
        upper_half = torch.as_tensor(rates > 0.5, device=draw_device).view(view)
        partner = _thresholds(1.0 - rates).to(draw_device).view(view)  # T(1 - eps)
        complement = uniforms.unsqueeze(0) >= partner  # ~(U < T(1 - eps))
        lower = torch.where(upper_half, complement, lower)
    return lower.to(device) if device is not None else lower


def mislabel(
    labels,
    epsilon,
    *,
    generator: torch.Generator | None = None,
    antithetic: bool = False,
    return_mask: bool = False,
):
    """Flip each label independently with probability ``epsilon``.

    Parameters
    ----------
    labels
        Tensor (or array) of clean labels in {+1, -1}, any shape.
    epsilon
        A rate in [0, 1], or a 1-D sequence of rates for a batch that shares
        one uniform per label (see :func:`flip_mask`).
    generator, antithetic
        Passed to :func:`flip_mask`.
    return_mask
        Also return the bool mask of flipped labels.

    Returns
    -------
    noisy : torch.Tensor
        ``labels.shape`` for a scalar ``epsilon``, else
        ``(n_eps, *labels.shape)``, in the dtype of ``labels``.
    mask : torch.Tensor
        Same shape, ``True`` where a label was flipped (only with
        ``return_mask=True``).

    Raises
    ------
    ValueError
        If a rate lies outside [0, 1] or a label is not +1 or -1.
    """
    labels = _check_labels(labels)
    rates, scalar = _check_rates(epsilon)
    mask = flip_mask(
        labels.shape, rates, generator=generator, antithetic=antithetic, device=labels.device
    )  # (n_eps, *labels.shape)
    noisy = torch.where(mask, -labels, labels)
    if scalar:
        noisy, mask = noisy[0], mask[0]
    return (noisy, mask) if return_mask else noisy


# --------------------------------------------------------------------------
# Uncertain labels (Definition 3.2)
# --------------------------------------------------------------------------


def vmf_log_odds(x: torch.Tensor, mu_plus: torch.Tensor, mu_minus: torch.Tensor, kappa) -> torch.Tensor:
    """Return the Bayes log-odds ``kappa (mu_plus - mu_minus) . x`` of two vMF classes.

    ``x`` has shape ``(..., d)``; the result has shape ``x.shape[:-1]``. Both
    classes share ``kappa``, so their normalizing constants cancel.
    """
    if not float(kappa) > 0:
        raise ValueError(f"invalid kappa={kappa!r}: the concentration must be > 0")
    return kappa * (x @ (mu_plus - mu_minus).to(x.dtype))


def uncertain_labels(
    reward,
    omega,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw labels that are +1 with probability ``sigmoid(reward / omega)``.

    Parameters
    ----------
    reward
        True rewards (for vMF data :func:`vmf_log_odds`), any shape.
    omega
        Uncertainty level > 0, or a 1-D sequence of them sharing one uniform
        per label (label ``i`` is +1 iff ``U_i < sigmoid(r_i / omega)``).
        ``omega = inf`` gives fair coins.
    generator
        Source of randomness.
    dtype
        Dtype of the labels (default: the dtype of ``reward``).

    Returns
    -------
    torch.Tensor
        Labels in {+1, -1}: ``reward.shape`` for a scalar ``omega``, else
        ``(n_omega, *reward.shape)``.
    """
    reward = torch.as_tensor(reward)
    if not reward.is_floating_point():
        reward = reward.to(torch.float64)
    omegas, scalar = _check_omegas(omega)
    dtype = dtype or reward.dtype
    draw_device = generator.device if generator is not None else reward.device
    uniforms = torch.rand(
        reward.shape, generator=generator, dtype=torch.float64, device=draw_device
    ).to(reward.device)  # (*shape)
    scale = torch.as_tensor(omegas, dtype=torch.float64, device=reward.device)
    scale = scale.view((-1,) + (1,) * reward.dim())
    p_plus = torch.sigmoid(reward.to(torch.float64).unsqueeze(0) / scale)  # (n_omega, *shape)
    labels = torch.where(uniforms.unsqueeze(0) < p_plus, 1.0, -1.0).to(dtype)
    return labels[0] if scalar else labels


def uncertain_flip_probability(reward, labels, omega) -> torch.Tensor:
    """Return ``sigmoid(-labels * reward / omega)``: the chance an uncertain label disagrees with ``labels``.

    Broadcasts ``reward`` and ``labels``; a 1-D ``omega`` adds a leading
    axis. Computed in float64.
    """
    labels = _check_labels(labels).to(torch.float64)
    reward = torch.as_tensor(reward, dtype=torch.float64)
    omegas, scalar = _check_omegas(omega)
    margin = labels * reward
    scale = torch.as_tensor(omegas, dtype=torch.float64).view((-1,) + (1,) * margin.dim())
    probability = torch.sigmoid(-margin.unsqueeze(0) / scale)
    return probability[0] if scalar else probability


def _tangential_nodes(slope: float, d: int) -> int:
    # The flip probability is analytic with poles at distance pi / slope from
    # the real axis, and the tangential weight (1 - t^2)^((d-4)/2) confines t
    # to a width of about 1 / sqrt(d). Measured: 3 * slope nodes reach 1e-12
    # at d = 16, kappa = 20, so the count scales like 12 * slope / sqrt(d).
    # scipy.special.roots_jacobi returns NaN for high orders at large
    # exponents (n = 1024 at d = 512 in SciPy 1.17), hence the cap near 2**18 / d.
    requested = math.ceil(3.0 * slope * min(1.0, 4.0 / math.sqrt(d)))
    stable = max(64, min(_MAX_NODES, (1 << 18) // d))
    return int(min(stable, max(64, requested)))


_MAX_NODES = 4096


# Gauss-Legendre nodes over the logistic variable s in [-40, 40]. Measured:
# 384 nodes agree with 1024 to 1e-14 relative in five settings spanning
# d = 3 to 4096, kappa = 2 to 4096 and omega = 0.001 to 10.
_LOGISTIC_NODES = 384
_LOGISTIC_REACH = 40.0  # P(|S| > 40) = 2 sigmoid(-40) < 1e-17


def _noise_rate_by_thresholds(slope: float, c: float, d: int, kappa: float) -> float:
    from noisypo import risk

    reach = min(slope, _LOGISTIC_REACH)
    nodes, weights = special.roots_legendre(_LOGISTIC_NODES)
    s = reach * nodes  # (nodes,) values of the logistic variable
    thresholds = np.clip(s / slope, -1.0, 1.0)
    below = risk.negative_side_probability(np.full_like(s, c), d, kappa, threshold=thresholds)
    density = special.expit(s) * special.expit(-s)  # logistic density
    # F(s / slope) = 1 for s > slope, which carries the mass sigmoid(-slope).
    upper_tail = special.expit(-slope) if reach == slope else 0.0
    return float(reach * np.sum(weights * below * density) + upper_tail)


def _noise_rate_by_projection(slope: float, c: float, d: int, kappa: float, nodes: int | None) -> float:
    from noisypo import risk

    def flip_probability(t):
        return special.expit(-slope * np.asarray(t))

    nodes = nodes or _tangential_nodes(slope, d)
    rate = float(
        np.asarray(risk.projection_expectation(flip_probability, c, d, kappa, tangential_nodes=nodes))
    )
    if not math.isfinite(rate):
        raise RuntimeError(
            f"quadrature failed for slope={slope}, d={d}, kappa={kappa}: the Gauss-Jacobi "
            f"rule with {nodes} nodes is not finite; pass fewer tangential_nodes"
        )
    return rate


def uncertain_noise_rate(
    omega,
    d: int,
    kappa: float,
    phi: float,
    *,
    method: str = "thresholds",
    tangential_nodes: int | None = None,
):
    """Return the exact noise rate ``epsilon(omega)`` of uncertain labels on vMF classes.

    .. math::

        \\epsilon(\\omega) = \\mathbb{E}_{x\\sim\\mathrm{vMF}(\\mu_+,\\kappa)}
        \\bigl[\\sigma(-a\\, u\\cdot x)\\bigr], \\qquad
        a = \\frac{2\\kappa\\sin(\\phi/2)}{\\omega}, \\quad u\\cdot\\mu_+ = \\sin(\\phi/2),

    computed by deterministic quadrature, without sampling.

    Parameters
    ----------
    omega
        Uncertainty level(s) > 0; ``inf`` gives 1/2.
    d, kappa, phi
        Dimension, concentration and angle between the class means.
    method
        ``"thresholds"`` (default): write ``sigma(-y) = P(S > y)`` for a
        standard logistic ``S`` independent of ``x``, so that
        ``epsilon = integral F(s / a) sigma'(s) ds`` with
        ``F(b) = P(u . x < b)`` from
        :func:`noisypo.risk.negative_side_probability` (an incomplete-beta
        integral) and 384 Gauss-Legendre nodes in ``s`` on [-40, 40]. The
        integrand stays smooth however steep the sigmoid is; doubling the
        nodes changed the result by about 1e-14 relative in the settings
        measured (d = 3 to 4096, omega = 0.001 to 10).
        ``"projection"``: the two-dimensional Gauss rule of
        :func:`noisypo.risk.projection_expectation` applied to the sigmoid.
        It is accurate to about 1e-12 when the slope ``a`` is moderate, but
        loses digits for steep sigmoids (small ``omega``, large ``kappa``)
        and for large ``d``, where SciPy's Jacobi nodes limit the node count.
        It serves as an independent check.
    tangential_nodes
        Gauss-Jacobi nodes of the ``"projection"`` rule. The default grows
        like ``12 * slope / sqrt(d)`` (``3 * slope`` for ``d <= 16``), from
        64 up to a cap of about ``2**18 / d`` (at most 4096) at which SciPy's
        Jacobi nodes stay finite.

    Returns
    -------
    float or numpy.ndarray
        A float for a scalar ``omega``, else an array of the same length.
        The rate increases with ``omega`` from the Bayes risk
        (``omega -> 0``, approached like ``omega**2``) to 1/2
        (``omega -> inf``).
    """
    omegas, scalar = _check_omegas(omega)
    d, kappa, phi = _check_vmf_setting(d, kappa, phi)
    if method not in ("thresholds", "projection"):
        raise ValueError(f"invalid method={method!r}: use 'thresholds' or 'projection'")
    c = math.sin(phi / 2.0)
    rates = np.empty_like(omegas)
    for k, value in enumerate(omegas):
        if math.isinf(value):
            rates[k] = 0.5
            continue
        slope = 2.0 * kappa * c / value
        if method == "thresholds":
            rates[k] = _noise_rate_by_thresholds(slope, c, d, kappa)
        else:
            rates[k] = _noise_rate_by_projection(slope, c, d, kappa, tangential_nodes)
    return float(rates[0]) if scalar else rates


def omega_for_noise_rate(
    epsilon: float, d: int, kappa: float, phi: float, *, rtol: float = 1e-10
) -> float:
    """Return the ``omega`` whose exact noise rate equals ``epsilon`` (Brent's method).

    Solves ``uncertain_noise_rate(omega, d, kappa, phi) = epsilon`` in
    ``log(omega)`` with :func:`scipy.optimize.brentq`; the map is strictly
    increasing, so the root is unique.

    Raises
    ------
    ValueError
        If ``epsilon`` is outside [0, 1], or outside the achievable range
        (Bayes risk, 1/2); the message gives that range.
    """
    from noisypo import risk

    rates, scalar = _check_rates(epsilon)
    if not scalar:
        raise ValueError("omega_for_noise_rate takes one epsilon; loop over a grid")
    target = float(rates[0])
    d, kappa, phi = _check_vmf_setting(d, kappa, phi)
    bayes = float(np.asarray(risk.negative_side_probability(math.sin(phi / 2.0), d, kappa)))
    if not bayes < target < 0.5:
        raise ValueError(
            f"no omega gives noise rate {target!r} for d={d}, kappa={kappa}, phi={phi}: "
            f"uncertain labels reach only the open range ({bayes:.6g}, 0.5) between the "
            "Bayes risk (omega -> 0) and a fair coin (omega -> inf)"
        )

    def excess(log_omega: float) -> float:
        return uncertain_noise_rate(math.exp(log_omega), d, kappa, phi) - target

    low, high = -2.0, 2.0
    while excess(low) > 0 and low > -60:
        low -= 4.0
    while excess(high) < 0 and high < 60:
        high += 4.0
    log_omega = optimize.brentq(excess, low, high, xtol=1e-12, rtol=rtol)
    return math.exp(log_omega)


def bhattacharyya_coefficient(d: int, kappa: float, phi: float) -> float:
    """Return ``integral sqrt(p_+ p_-) = C_d(kappa) / C_d(kappa cos(phi/2))`` for two vMF classes.

    ``sqrt(p_+ p_-)`` is ``C_d(kappa) exp(kappa (mu_+ + mu_-) . x / 2)`` and
    ``|mu_+ + mu_-| / 2 = cos(phi / 2)``, so the integral is a ratio of
    normalizing constants. Half of it equals the uncertain-label noise rate
    at ``omega = 2`` exactly (see :func:`uncertain_noise_rate_bound`).
    """
    from noisypo import vmf

    d, kappa, phi = _check_vmf_setting(d, kappa, phi)
    log_ratio = vmf.log_normalizer(d, kappa) - vmf.log_normalizer(d, kappa * math.cos(phi / 2.0))
    return float(np.exp(log_ratio))


def uncertain_noise_rate_bound(omega, d: int, kappa: float, phi: float):
    """Return the book's upper bound on the uncertain-label noise rate ``epsilon(omega)``.

    Two facts give the bound (the book's Lemma C.1):

    1. ``epsilon(2) = BC / 2`` exactly, with ``BC`` the Bhattacharyya
       coefficient (:func:`bhattacharyya_coefficient`), because
       ``sigmoid(-r*/2) = sqrt(p_-) / (sqrt(p_+) + sqrt(p_-))`` and the two
       classes contribute equally. As ``epsilon(omega)`` increases with
       ``omega``, ``epsilon(omega) <= BC / 2`` for every ``omega <= 2``.
    2. For ``theta`` in [0, 1] and every real ``y``,
       ``sigmoid(-y) <= h(theta) exp(-theta y)`` with
       ``h(theta) = theta**theta (1 - theta)**(1 - theta)``. The vMF moment
       generating function ``E[exp(t . x)] = C_d(kappa) / C_d(|kappa mu + t|)``
       then gives, for every ``omega``,

    .. math::

        \\epsilon(\\omega) \\le \\min_{0\\le\\theta\\le 1} h(\\theta)\\,
            \\frac{C_d(\\kappa)}{C_d(\\kappa\\rho_\\theta)},\\qquad
        \\rho_\\theta^2 = 1 - \\frac{4\\theta c^2}{\\omega}\\Bigl(1 - \\frac{\\theta}{\\omega}\\Bigr),
        \\quad c = \\sin(\\phi/2).

    The function returns the smallest of ``BC / 2`` (when ``omega <= 2``),
    the Chernoff bound of fact 2 (minimum over ``theta`` by bounded Brent
    search) and 1/2, the noise rate of a fair coin.

    Returns
    -------
    float or numpy.ndarray
        A float for a scalar ``omega``, else an array of the same length.
    """
    from noisypo import vmf

    omegas, scalar = _check_omegas(omega)
    d, kappa, phi = _check_vmf_setting(d, kappa, phi)
    c2 = math.sin(phi / 2.0) ** 2
    log_c_kappa = float(np.asarray(vmf.log_normalizer(d, kappa)))
    half_coefficient = 0.5 * bhattacharyya_coefficient(d, kappa, phi)

    def log_chernoff(theta: float, value: float) -> float:
        rho2 = 1.0 - 4.0 * theta * c2 / value * (1.0 - theta / value)
        log_h = special.xlogy(theta, theta) + special.xlogy(1.0 - theta, 1.0 - theta)
        kappa_rho = kappa * math.sqrt(max(rho2, 0.0))
        return log_h + log_c_kappa - float(np.asarray(vmf.log_normalizer(d, kappa_rho)))

    bounds = np.empty_like(omegas)
    for k, value in enumerate(omegas):
        if math.isinf(value):
            bounds[k] = 0.5
            continue
        result = optimize.minimize_scalar(
            log_chernoff, bounds=(0.0, 1.0), args=(value,), method="bounded",
            options={"xatol": 1e-10},
        )
        candidates = [0.5, math.exp(result.fun)]
        if value <= 2.0:
            candidates.append(half_coefficient)
        bounds[k] = min(candidates)
    return float(bounds[0]) if scalar else bounds


# --------------------------------------------------------------------------
# Real data (Appendix D.2): a linear reward model and the omega search
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearReward:
    """A linear reward ``r(x) = x . weight + bias`` fitted to labelled embeddings."""

    weight: torch.Tensor  # (d,)
    bias: float
    losses: np.ndarray = field(repr=False)  # (epochs,) training BCE per epoch

    def __call__(self, x) -> torch.Tensor:
        """Return the rewards of the rows of ``x`` (shape ``(..., d)``)."""
        x = torch.as_tensor(x, dtype=self.weight.dtype)
        return x @ self.weight + self.bias


def fit_linear_reward(
    x,
    labels,
    *,
    epochs: int = 500,
    lr: float = 0.01,
    dtype: torch.dtype = torch.float32,
) -> LinearReward:
    """Fit a linear reward model with binary cross-entropy, full-batch Adam.

    Minimises ``mean(log(1 + exp(-s_i (x_i . w + b))))`` (BCE with targets
    ``(s_i + 1) / 2``) with :class:`torch.optim.Adam`, one full-batch step
    per epoch: 500 epochs at learning rate 0.01 by default, as in the
    paper's Appendix D.2. The paper does not say how it initialises the
    model; this function starts from ``w = 0, b = 0``, which makes the fit
    deterministic (the loss is convex).

    Parameters
    ----------
    x
        Embeddings, shape ``(n, d)``; used as given (normalise first if the
        rewards should act on unit vectors).
    labels
        Labels in {+1, -1}, shape ``(n,)``.
    epochs, lr
        Number of full-batch Adam steps and the learning rate.
    dtype
        Floating dtype of the fit.
    """
    x = torch.as_tensor(x, dtype=dtype)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (n, d) with n >= 1, got {tuple(x.shape)}")
    labels = _check_labels(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(
            f"labels must have shape ({x.shape[0]},) to match x, got {tuple(labels.shape)}"
        )
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"invalid epochs={epochs!r}: need an integer >= 1")
    if not lr > 0:
        raise ValueError(f"invalid lr={lr!r}: the learning rate must be > 0")

    targets = (labels.to(dtype) + 1.0) / 2.0  # (n,) in {0, 1}
    weight = torch.zeros(x.shape[1], dtype=dtype, requires_grad=True)
    bias = torch.zeros((), dtype=dtype, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    losses = np.empty(int(epochs))
    for epoch in range(int(epochs)):
        optimizer.zero_grad()
        logits = x @ weight + bias  # (n,)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss.backward()
        optimizer.step()
        losses[epoch] = loss.item()
    return LinearReward(weight.detach(), float(bias.detach()), losses)


def mean_flip_probability(rewards, labels, omega: float) -> float:
    """Return ``mean(sigmoid(-labels * rewards / omega))``: the expected flip fraction."""
    return float(uncertain_flip_probability(rewards, labels, float(omega)).mean())


def omega_for_flip_rate(rewards, labels, epsilon: float, tol: float = 1e-3) -> float:
    """Find ``omega`` whose mean flip probability is within ``tol`` of ``epsilon``.

    The real-data recipe: with rewards ``r_i`` from a fitted model
    (:func:`fit_linear_reward`) and labels ``s_i``, solve
    ``mean_i sigmoid(-s_i r_i / omega) = epsilon`` for ``omega`` with
    Brent's method in ``log(omega)``, then check the tolerance.

    Raises
    ------
    ValueError
        If ``epsilon`` is outside [0, 1], ``tol <= 0``, or ``epsilon`` lies
        outside the reachable range: from the fraction the rewards
        misclassify (``omega -> 0``) to 1/2 (``omega -> inf``).
    RuntimeError
        If the root that Brent's method returns misses the tolerance (a
        guard: the map is continuous, so the root meets it).
    """
    rates, scalar = _check_rates(epsilon)
    if not scalar:
        raise ValueError("omega_for_flip_rate takes one epsilon; loop over a grid")
    target = float(rates[0])
    if not tol > 0:
        raise ValueError(f"invalid tol={tol!r}: the tolerance must be > 0")
    labels = _check_labels(labels).to(torch.float64)
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    if rewards.shape != labels.shape:
        raise ValueError(
            f"rewards and labels must have the same shape, got {tuple(rewards.shape)} "
            f"and {tuple(labels.shape)}"
        )
    margins = (labels * rewards).numpy()
    floor = float(np.mean(margins < 0) + 0.5 * np.mean(margins == 0))
    if not floor < target < 0.5:
        raise ValueError(
            f"no omega gives mean flip probability {target!r}: it ranges over ({floor:.6g}, 0.5) "
            "between the fraction the reward model misclassifies (omega -> 0) and a fair coin "
            "(omega -> inf)"
        )

    scale = float(np.max(np.abs(margins)))

    def excess(log_omega: float) -> float:
        omega = math.exp(log_omega)
        return float(np.mean(special.expit(-margins / omega))) - target

    low, high = math.log(scale) - 5.0, math.log(scale) + 5.0
    while excess(low) > 0 and low > math.log(scale) - 60:
        low -= 5.0
    while excess(high) < 0 and high < math.log(scale) + 60:
        high += 5.0
    log_omega = optimize.brentq(excess, low, high, xtol=1e-12)
    omega = math.exp(log_omega)
    achieved = mean_flip_probability(rewards, labels, omega)
    if abs(achieved - target) > tol:
        raise RuntimeError(
            f"omega search missed the tolerance: mean flip probability {achieved:.6g} "
            f"at omega={omega:.6g}, target {target} +/- {tol}"
        )
    return omega
