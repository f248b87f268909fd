"""Exact population risk of linear boundaries on von Mises-Fisher classes.

For ``x ~ vMF(mu, kappa)`` on the sphere ``S^{d-1}`` write
``x = w mu + sqrt(1 - w^2) v`` with ``w = mu . x`` and ``v`` uniform on the
unit sphere orthogonal to ``mu``, independent of ``w``. The law of ``w`` has
density proportional to ``exp(kappa w) (1 - w^2)^((d-3)/2)``. For a unit
vector ``u`` with ``c = u . mu = cos(alpha)``, the tangential coordinate
``t = (u - c mu) . v / sin(alpha)`` has density proportional to
``(1 - t^2)^((d-4)/2)`` on ``[-1, 1]``, so ``(1 + t) / 2`` follows
``Beta((d-2)/2, (d-2)/2)``. Conditioning on ``w`` gives the exact
one-dimensional integral

.. math::

    P(u \\cdot x < b) = E_w\\left[ I_{z(w)}\\!\\left(\\tfrac{d-2}{2},
    \\tfrac{d-2}{2}\\right) \\right], \\qquad
    z(w) = \\frac{1}{2}\\left(1 + \\frac{b - c w}{\\sin\\alpha\\sqrt{1 - w^2}}
    \\right),

with ``I_z`` the regularized incomplete beta function and ``z`` clipped to
``[0, 1]``. Every function here evaluates such integrals by quadrature.

Numerics. The integral is taken over the polar angle ``theta = arccos(w)``,
whose density ``exp(kappa cos theta) sin(theta)^(d-2)`` is a smooth,
unimodal bump even when ``w`` piles up near 1 at large ``kappa``. The bump
is cut to the window where its log-density is within ``_WINDOW_NATS`` of the
mode (the rest carries a relative mass below ``exp(-100)``). The integrand
``I_z`` is identically 0 or 1 outside an interval of ``theta`` whose ends
are known in closed form. At those ends it behaves like the power
``(theta - theta_0)^((d-2)/2)``, which is a square root at ``d = 3``. Each
piece is integrated with a tanh-sinh (double exponential) rule, which
converges geometrically despite such end-point singularities, and the
density is normalised on the same nodes. ``tests/test_risk.py`` checks the
result against mpmath and adaptive SciPy quadrature to ``1e-12``. Against the
same rule with a four times finer step, the absolute error was below
``5e-15`` and the relative error below ``3e-6`` on a grid of
``2 <= d <= 4096``, ``kappa <= 10^4`` and cosines in ``[-1, 1]``.
Probabilities far below ``1e-40`` lie outside the window and come back as 0.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from scipy import optimize, special

__all__ = [
    "negative_side_probability",
    "projection_expectation",
    "population_risk",
    "bayes_risk",
    "bayes_threshold",
]

# Log-density drop (in nats) that bounds the integration window in theta.
_WINDOW_NATS = 100.0
# Tanh-sinh step and half-width in the transformed variable.
_TANH_SINH_STEP = 1.0 / 32.0
_TANH_SINH_REACH = 3.6


def _tanh_sinh_rule(step: float = _TANH_SINH_STEP, reach: float = _TANH_SINH_REACH):
    """Return tanh-sinh nodes on [-1, 1] as (distance to the near end, side, weight).

    The distance ``1 - |t|`` is returned separately so that nodes that
    crowd an end point keep their full relative precision.
    """
    k = np.arange(-int(reach / step), int(reach / step) + 1)
    s = k * step
    u = 0.5 * math.pi * np.sinh(s)
    # 1 - tanh(|u|) = exp(-|u|) / cosh(u), without cancellation.
    gap = np.exp(-np.abs(u)) / np.cosh(u)
    weight = step * 0.5 * math.pi * np.cosh(s) / np.cosh(u) ** 2
    side = np.sign(s)  # -1: near the left end, +1: near the right end, 0: centre
    return gap, side, weight


_GAP, _SIDE, _WEIGHT = _tanh_sinh_rule()


def _map_rule(left: np.ndarray, right: np.ndarray):
    """Map the tanh-sinh rule to the intervals [left, right] (shape (m,)).

    Returns nodes and weights of shape (m, n); empty intervals get zero weights.
    """
    left = left[..., None]
    right = right[..., None]
    half = 0.5 * np.maximum(right - left, 0.0)
    # (m, n): measure each node from its own end point.
    nodes = np.where(_SIDE < 0, left + half * _GAP, right - half * _GAP)
    nodes = np.where(_SIDE == 0, left + half, nodes)
    weights = half * _WEIGHT
    return nodes, weights


def _log_kernel(theta, d: int, kappa: float, theta_mode: float):
    """Unnormalised log-density of the polar angle, zero at the mode."""
    value = kappa * (np.cos(theta) - math.cos(theta_mode))
    if d > 2:
        with np.errstate(divide="ignore"):
            value = value + (d - 2) * (np.log(np.sin(theta)) - math.log(math.sin(theta_mode)))
    return value


def _angle_mode(d: int, kappa: float) -> float:
    """Mode of the polar-angle density exp(kappa cos t) sin(t)^(d-2) on [0, pi]."""
    if d == 2:
        return 0.0
    if kappa == 0.0:
        return 0.5 * math.pi
    # cos t / sin^2 t = r has the root y = cos t = 2r / (1 + sqrt(1 + 4 r^2));
    # 1 - y is formed without cancellation so small angles stay accurate.
    r = kappa / (d - 2)
    root = math.sqrt(1.0 + 4.0 * r * r)
    one_minus_y = (1.0 + 1.0 / (root + 2.0 * r)) / (1.0 + root)
    return 2.0 * math.asin(math.sqrt(0.5 * one_minus_y))


def _angle_window(d: int, kappa: float) -> tuple[float, float, float]:
    """Return (low, high, mode) of the polar-angle window that contains the mass."""
    mode = _angle_mode(d, kappa)

    def excess(theta: float) -> float:
        return float(_log_kernel(theta, d, kappa, mode)) + _WINDOW_NATS

    low, high = 0.0, math.pi
    if mode > 0.0 and excess(0.0) < 0.0:
        low = optimize.brentq(excess, 0.0, mode, xtol=1e-15, rtol=1e-15)
    if mode < math.pi and excess(math.pi) < 0.0:
        high = optimize.brentq(excess, mode, math.pi, xtol=1e-15, rtol=1e-15)
    return low, high, mode


def _check_dimension_and_kappa(d, kappa) -> tuple[int, float]:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise TypeError(f"d must be an integer, got {type(d).__name__}; pass e.g. d=16")
    if d < 2:
        raise ValueError(f"invalid dimension d={d}: the sphere S^(d-1) needs d >= 2")
    kappa_array = np.asarray(kappa, dtype=float)
    if kappa_array.ndim != 0:
        raise ValueError(
            f"kappa must be a scalar, got shape {kappa_array.shape}; call once per kappa"
        )
    kappa_value = float(kappa_array)
    if not math.isfinite(kappa_value) or kappa_value < 0.0:
        raise ValueError(f"invalid concentration kappa={kappa_value}: need a finite kappa >= 0")
    return int(d), kappa_value


def _check_cosines(c) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    if not np.all(np.isfinite(c)):
        raise ValueError("c contains NaN or infinite values; pass cosines in [-1, 1]")
    if np.any(np.abs(c) > 1.0 + 1e-12):
        worst = float(np.max(np.abs(c)))
        raise ValueError(
            f"invalid cosine |c|={worst}: c = u . mu must lie in [-1, 1] for unit u and mu"
        )
    return np.clip(c, -1.0, 1.0)


def _inner_probability(alpha, beta_angle, theta, d: int):
    """P(t < tau | theta) for the tangential coordinate t (shape of theta).

    ``alpha`` = arccos(c) and ``beta_angle`` = arccos(b) broadcast against
    ``theta``. Only called on the open interval where the probability is in (0, 1).
    """
    denominator = np.sin(alpha) * np.sin(theta)
    # z = (b - cos(theta + alpha)) / (2 sin alpha sin theta) by a product of
    # sines, which avoids the cancellation of the difference of cosines.
    # Nodes of empty intervals (alpha = 0) divide by zero; their weight is 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (
            np.sin(0.5 * (theta + alpha + beta_angle))
            * np.sin(0.5 * (theta + alpha - beta_angle))
            / denominator
        )
    z = np.clip(np.nan_to_num(z, nan=0.0), 0.0, 1.0)
    if d == 2:
        # (1 + t) / 2 is a fair coin on {0, 1}: P(t < tau) = 1/2 inside the interval.
        return np.full_like(z, 0.5)
    half = 0.5 * (d - 2)
    return special.betainc(half, half, z)


def _probability_below(alpha, beta_angle, d: int, kappa: float, window):
    """P(u . x < b) for 0 <= alpha <= pi/2, arrays alpha and beta_angle of shape (m,)."""
    low, high, mode = window
    # Ends of the theta interval on which P(t < tau | theta) lies strictly in (0, 1).
    lower = np.abs(beta_angle - alpha)
    upper = np.minimum(beta_angle + alpha, 2.0 * math.pi - beta_angle - alpha)
    ones_below = alpha > beta_angle  # theta < lower gives probability 1 (else 0)
    ones_above = beta_angle + alpha < math.pi  # theta > upper gives probability 1 (else 0)

    def integrate(left, right, inner):
        left = np.clip(left, low, high)
        right = np.clip(right, low, high)
        nodes, weights = _map_rule(left, right)
        density = np.exp(_log_kernel(nodes, d, kappa, mode))
        if inner:
            values = _inner_probability(alpha[:, None], beta_angle[:, None], nodes, d)
            density = density * values
        return np.sum(weights * density, axis=-1)

    middle = np.where(
        upper > lower,
        integrate(lower, np.maximum(upper, lower), inner=True),
        0.0,
    )
    below = np.where(ones_below, integrate(np.full_like(lower, low), lower, inner=False), 0.0)
    above = np.where(ones_above, integrate(upper, np.full_like(upper, high), inner=False), 0.0)
    total = integrate(np.array([low]), np.array([high]), inner=False)[0]
    return (middle + below + above) / total


def negative_side_probability(c, d, kappa, *, threshold=0.0) -> np.ndarray:
    """Compute P(u . x < threshold) for x ~ vMF(mu, kappa) and unit u with u . mu = c.

    Parameters
    ----------
    c : array_like
        Cosines ``u . mu`` in ``[-1, 1]``, any shape.
    d : int
        Dimension of the ambient space (the sphere is ``S^{d-1}``), ``d >= 2``.
    kappa : float
        Concentration ``kappa >= 0``.
    threshold : array_like, optional
        Offset ``b`` of the half-space ``u . x < b``; broadcasts against
        ``c``, values in ``[-1, 1]``. Default 0 (a boundary through the
        origin).

    Returns
    -------
    numpy.ndarray
        Probabilities of the broadcast shape of ``c`` and ``threshold``,
        float64, with absolute error of order ``1e-14`` for
        ``2 <= d <= 4096``, ``0 <= kappa <= 10^4`` (see the module notes).

    Notes
    -----
    Implements

    .. math::

        P(u \\cdot x < b) = \\int_0^\\pi I_{z(\\theta)}\\big(\\tfrac{d-2}{2},
        \\tfrac{d-2}{2}\\big)\\, p(\\theta)\\, d\\theta, \\qquad
        p(\\theta) \\propto e^{\\kappa\\cos\\theta} \\sin^{d-2}\\theta,

    with ``z(theta) = (b - cos(theta + alpha)) / (2 sin(alpha) sin(theta))``
    clipped to ``[0, 1]`` and ``alpha = arccos(c)``. For ``d = 2`` the
    tangential coordinate is a fair sign and ``I_z`` is replaced by 1/2 on
    the interval where ``0 < z < 1``. Cosines ``c < 0`` use the reflection
    ``P(u . x < b; c) = 1 - P(u . x < -b; -c)``, so results near 0 keep
    their relative precision when ``c >= 0`` and ``b <= 0``.

    Examples
    --------
    >>> float(negative_side_probability(0.0, 8, 3.0))
    0.5
    """
    c = _check_cosines(c)
    d, kappa = _check_dimension_and_kappa(d, kappa)
    b = np.asarray(threshold, dtype=float)
    if not np.all(np.isfinite(b)) or np.any(np.abs(b) > 1.0):
        raise ValueError("invalid threshold: every value must be finite and lie in [-1, 1]")
    c, b = np.broadcast_arrays(c, b)
    shape = c.shape
    c = c.ravel()
    b = b.ravel()

    # Reflect c < 0 onto c > 0, so that alpha <= pi/2 in the kernel.
    flip = c < 0.0
    alpha = np.arccos(np.abs(c))
    beta_angle = np.arccos(np.where(flip, -b, b))
    window = _angle_window(d, kappa)
    result = np.empty_like(c)
    for start in range(0, c.size, _CHUNK):
        stop = start + _CHUNK
        result[start:stop] = _probability_below(
            alpha[start:stop], beta_angle[start:stop], d, kappa, window
        )
    result = np.where(flip, 1.0 - result, result)
    return np.clip(result, 0.0, 1.0).reshape(shape)


# Boundaries per block, so that the (block, nodes) arrays stay near 10 MB.
_CHUNK = 4096


@functools.lru_cache(maxsize=64)
def _tangential_rule(d: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi rule for the tangential coordinate, density (1 - t^2)^((d-4)/2).

    Cached because computing the nodes costs far more than using them, and
    root finding for omega calls projection_expectation many times.
    """
    if d == 2:
        t_nodes = np.array([-1.0, 1.0])
        t_weights = np.array([0.5, 0.5])
    else:
        exponent = 0.5 * (d - 4)
        t_nodes, t_weights = special.roots_jacobi(nodes, exponent, exponent)
        t_weights = t_weights / np.sum(t_weights)
    t_nodes.setflags(write=False)
    t_weights.setflags(write=False)
    return t_nodes, t_weights


def projection_expectation(
    func: Callable[[np.ndarray], np.ndarray], c, d, kappa, *, tangential_nodes: int = 64
) -> np.ndarray:
    """Compute E[func(u . x)] for x ~ vMF(mu, kappa) and unit u with u . mu = c.

    Parameters
    ----------
    func : callable
        Vectorised function of a float64 array that returns an array of the
        same shape. It should be smooth on ``[-1, 1]``: the rule is exact
        for polynomials in ``u . x`` of degree below ``2 tangential_nodes``
        and converges geometrically for analytic functions, but only slowly
        for jumps (use :func:`negative_side_probability` for indicators).
    c : array_like
        Cosines ``u . mu`` in ``[-1, 1]``, any shape.
    d : int
        Dimension, ``d >= 2``.
    kappa : float
        Concentration ``kappa >= 0``.
    tangential_nodes : int, optional
        Gauss-Jacobi nodes for the tangential coordinate (default 64).

    Returns
    -------
    numpy.ndarray
        Expectations of the shape of ``c``.

    Notes
    -----
    With ``u . x = cos(alpha) cos(theta) + sin(alpha) sin(theta) t`` the
    expectation is the double integral of ``func`` against
    ``p(theta) (1 - t^2)^((d-4)/2)``. The angle ``theta`` uses the
    tanh-sinh rule of :func:`negative_side_probability`; ``t`` uses
    Gauss-Jacobi nodes with both exponents ``(d-4)/2`` (two equal atoms at
    ``t = +-1`` when ``d = 2``).

    Examples
    --------
    >>> import numpy as np
    >>> mean = projection_expectation(lambda s: s, 1.0, 3, 2.0)
    >>> bool(np.isclose(mean, 1 / np.tanh(2.0) - 1 / 2.0))
    True
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    c = _check_cosines(c)
    d, kappa = _check_dimension_and_kappa(d, kappa)
    if isinstance(tangential_nodes, bool) or int(tangential_nodes) != tangential_nodes or tangential_nodes < 1:
        raise ValueError(f"invalid tangential_nodes={tangential_nodes}: need a positive integer")
    shape = c.shape
    c = c.ravel()

    t_nodes, t_weights = _tangential_rule(d, int(tangential_nodes))

    low, high, mode = _angle_window(d, kappa)
    theta, theta_weights = _map_rule(np.array([low]), np.array([high]))
    theta, theta_weights = theta[0], theta_weights[0]  # (n,)
    density = theta_weights * np.exp(_log_kernel(theta, d, kappa, mode))
    density = density / np.sum(density)  # (n,)

    result = np.empty_like(c)
    # Cosines per block, so that the (block, n_theta, n_t) values stay near 32 MB.
    block = max(1, (1 << 22) // (theta.size * t_nodes.size))
    for start in range(0, c.size, block):
        cos_a = c[start : start + block, None, None]  # (m, 1, 1)
        sin_a = np.sqrt(np.maximum(0.0, 1.0 - cos_a**2))
        projection = cos_a * np.cos(theta)[:, None] + sin_a * np.sin(theta)[:, None] * t_nodes
        values = np.asarray(func(projection), dtype=float)  # (m, n_theta, n_t)
        if values.shape != projection.shape:
            raise ValueError(
                f"func returned shape {values.shape} for input shape {projection.shape}; "
                "it must act elementwise"
            )
        result[start : start + block] = np.einsum("mij,i,j->m", values, density, t_weights)
    return result.reshape(shape)


def _as_float_array(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_unit(mu: np.ndarray, name: str) -> np.ndarray:
    if mu.ndim != 1:
        raise ValueError(f"{name} must be one vector of shape (d,), got shape {mu.shape}")
    norm = float(np.linalg.norm(mu))
    if abs(norm - 1.0) > 1e-6:
        raise ValueError(f"{name} must be a unit vector, got norm {norm:.6g}; divide it by its norm")
    return mu / norm


def _check_prior(prior) -> float:
    value = float(prior)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"invalid prior={value}: the class-(+1) probability must lie in [0, 1]")
    return value


def population_risk(delta, mu_plus, mu_minus, kappa, *, prior=0.5) -> np.ndarray:
    """Compute the 0-1 population risk of the classifiers sign(delta . x).

    The classes are ``x ~ vMF(mu_plus, kappa)`` with label ``+1`` (probability
    ``prior``) and ``x ~ vMF(mu_minus, kappa)`` with label ``-1``. The
    reward margin of a sample with label ``s`` is ``r = beta s delta . x``,
    and the risk is ``P(r <= 0)`` on a fresh clean sample.

    Parameters
    ----------
    delta : array_like or torch.Tensor
        Boundary normals, shape ``(..., d)``.
    mu_plus, mu_minus : array_like or torch.Tensor
        Unit class means, shape ``(d,)``.
    kappa : float
        Common concentration ``kappa >= 0``.
    prior : float, optional
        Probability of the ``+1`` class (default 0.5).

    Returns
    -------
    numpy.ndarray
        Risks of shape ``delta.shape[:-1]``, float64.

    Notes
    -----
    With ``u = delta / |delta|``,

    .. math::

        R(\\delta) = \\pi_+ P_{+}(u \\cdot x < 0) + (1 - \\pi_+) P_{-}(-u \\cdot x < 0),

    each term from :func:`negative_side_probability` with cosines
    ``u . mu_plus`` and ``-u . mu_minus``. A zero ``delta`` gives every
    margin the value 0 and hence risk 1, following ``R = P(r <= 0)``.
    """
    delta = _as_float_array(delta, "delta")
    mu_plus = _check_unit(_as_float_array(mu_plus, "mu_plus"), "mu_plus")
    mu_minus = _check_unit(_as_float_array(mu_minus, "mu_minus"), "mu_minus")
    prior = _check_prior(prior)
    if mu_plus.shape != mu_minus.shape:
        raise ValueError(
            f"mu_plus and mu_minus differ in shape: {mu_plus.shape} vs {mu_minus.shape}"
        )
    if delta.ndim == 0 or delta.shape[-1] != mu_plus.shape[0]:
        raise ValueError(
            f"delta must have shape (..., {mu_plus.shape[0]}) to match the means, "
            f"got {delta.shape}"
        )
    d = mu_plus.shape[0]
    norm = np.linalg.norm(delta, axis=-1)  # (...)
    zero = norm == 0.0
    u = delta / np.where(zero, 1.0, norm)[..., None]
    cos_plus = np.clip(u @ mu_plus, -1.0, 1.0)
    cos_minus = np.clip(-(u @ mu_minus), -1.0, 1.0)
    risk = prior * negative_side_probability(cos_plus, d, kappa) + (
        1.0 - prior
    ) * negative_side_probability(cos_minus, d, kappa)
    return np.where(zero, 1.0, risk)


def bayes_threshold(d, kappa, phi, prior=0.5) -> float:
    """Return the offset b of the Bayes rule ``u . x > b`` (u along mu_+ - mu_-).

    The log-odds of the two vMF classes is
    ``kappa (mu_+ - mu_-) . x + log(prior / (1 - prior))`` and
    ``|mu_+ - mu_-| = 2 sin(phi / 2)``, so
    ``b = log((1 - prior) / prior) / (2 kappa sin(phi / 2))``, clipped to
    ``[-1, 1]`` (outside, one class wins everywhere). ``b = 0`` at prior 1/2.
    """
    d, kappa = _check_dimension_and_kappa(d, kappa)
    phi = _check_angle(phi)
    prior = _check_prior(prior)
    if prior in (0.0, 1.0):
        return -1.0 if prior == 1.0 else 1.0
    log_odds = math.log((1.0 - prior) / prior)
    if log_odds == 0.0:
        return 0.0
    scale = 2.0 * kappa * math.sin(0.5 * phi)
    if scale == 0.0:
        return math.copysign(1.0, log_odds)
    return float(np.clip(log_odds / scale, -1.0, 1.0))


def _check_angle(phi) -> float:
    value = float(phi)
    if not 0.0 <= value <= math.pi:
        raise ValueError(f"invalid angle phi={value}: the angle between the means lies in [0, pi]")
    return value


def bayes_risk(d, kappa, phi, prior=0.5) -> float:
    """Compute the Bayes risk of two vMF classes at angle phi.

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    kappa : float
        Common concentration.
    phi : float
        Angle between ``mu_+`` and ``mu_-`` in ``[0, pi]``.
    prior : float, optional
        Probability of the ``+1`` class (default 0.5).

    Returns
    -------
    float
        ``prior P_+(u . x < b) + (1 - prior) P_-(u . x > b)`` with ``u``
        the unit vector along ``mu_+ - mu_-`` and ``b`` from
        :func:`bayes_threshold`. Under ``vMF(mu_+)``, ``u . mu_+ = sin(phi/2)``;
        under ``vMF(mu_-)``, ``-u . mu_- = sin(phi/2)`` as well. At prior 1/2
        this is ``P(u . x < 0)`` with ``c = sin(phi / 2)``, the risk of the
        best linear boundary through the origin.
    """
    d, kappa = _check_dimension_and_kappa(d, kappa)
    phi = _check_angle(phi)
    prior = _check_prior(prior)
    b = bayes_threshold(d, kappa, phi, prior)
    c = math.sin(0.5 * phi)
    plus_error = negative_side_probability(c, d, kappa, threshold=b)
    # Under the minus class, u . x > b  <=>  (-u) . x < -b with (-u) . mu_- = c.
    minus_error = negative_side_probability(c, d, kappa, threshold=-b)
    return float(prior * plus_error + (1.0 - prior) * minus_error)
