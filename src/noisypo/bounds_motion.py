"""How far the decision boundary moves under gradient flow (the book's Lemma B.3).

Setting: unit embeddings ``x_j`` (rows of ``x``, ``N`` of them), labels
``s_j`` in {+1, -1}, the GPO loss ``L = (1/N) sum_j f(r_j)`` with margins
``r_j = beta s_j Delta . x_j``, and gradient flow from ``Delta(0) = 0``:

.. math::

    \\tau \\dot\\Delta = -\\frac{2\\beta}{N} \\sum_j f'(r_j)\\, s_j x_j .

Write ``m = (1/N) sum_j s_j x_j`` (the label-weighted mean, the first
boundary direction), ``S = (1/N) sum_j x_j x_j^T`` and
``lambda = lambda_max(S)`` (at most 1 for unit rows, because trace S = 1),
``c0 = -f'(0) > 0``, ``M = sup |f''|`` and, where it is finite,
``G = sup |f'|``. Split ``Delta(t) = (2 beta c0 t / tau) m + E(t)``. The
book proves ``|E(t)| <= rho(t) (2 beta c0 t / tau) |m|`` with

* the Gronwall ratio ``rho_G(t) = (exp(k t) - 1 - k t) / (k t)``,
  ``k = 2 beta^2 M lambda / tau``, valid for every loss with ``M`` finite
  (DPO, IPO), and
* the linear-growth ratio ``rho_L(t) = beta^2 M G lambda t / (c0 tau |m|)``,
  valid when ``|f'| <= G`` as well (DPO, with ``G = 1``),

so the angle between ``Delta(t)`` and ``m`` is at most
``arcsin(min(rho_G, rho_L))`` while that minimum is below 1. SLiC's hinge
has no finite ``M``, but ``f' = -1`` below margin 1, so ``Delta(t)`` is
exactly ``(2 beta t / tau) m`` until the first margin reaches 1.

The constants are the book's own: the paper states the lemma with constants
that did not survive text extraction. See the chapter "Lemma B.3, how far the
boundary moves" for the proofs.

References
----------
Im, S. and Li, Y. (2025). How Well Can Preference Optimization Generalize
Under Noisy Feedback? arXiv:2510.01458, Lemma B.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "LossConstants",
    "LOSS_CONSTANTS",
    "loss_constants",
    "angle_between",
    "label_weighted_mean",
    "second_moment_max_eigenvalue",
    "first_order_angle_rate",
    "gronwall_ratio",
    "linear_growth_ratio",
    "angle_bound",
    "gronwall_stable_time",
    "linear_growth_stable_time",
    "stable_time",
    "hinge_first_crossing_time",
    "hinge_crossing_time_lower_bound",
    "expected_m_norm",
]


@dataclass(frozen=True)
class LossConstants:
    """Constants of a GPO loss ``f`` that enter the boundary-motion bound."""

    name: str
    slope_at_zero: float  # c0 = -f'(0) > 0: speed of the first direction
    curvature_bound: float | None  # M = sup |f''|; None for the hinge
    derivative_bound: float | None  # G = sup |f'|; None when unbounded (IPO)


# DPO f(z) = log(1 + e^{-z}): f'(z) = -sigmoid(-z), so c0 = 1/2, G = 1, and
# f''(z) = sigmoid(z) sigmoid(-z) <= 1/4 with equality at z = 0.
# IPO f(z) = (z - 1)^2: f'(z) = 2 (z - 1), so c0 = 2, f'' = 2, f' unbounded.
# SLiC f(z) = max(0, 1 - z): f' = -1 below 1 and 0 above, so c0 = 1, G = 1,
# and f' jumps at z = 1, so no finite M exists.
LOSS_CONSTANTS: dict[str, LossConstants] = {
    "dpo": LossConstants("dpo", 0.5, 0.25, 1.0),
    "ipo": LossConstants("ipo", 2.0, 2.0, None),
    "slic": LossConstants("slic", 1.0, None, 1.0),
}


def loss_constants(name: str) -> LossConstants:
    """Return ``c0 = -f'(0)``, ``M = sup|f''|`` and ``G = sup|f'|`` of a loss.

    Parameters
    ----------
    name
        ``"dpo"``, ``"ipo"`` or ``"slic"`` (case-insensitive).

    Raises
    ------
    ValueError
        If the name is not one of these.
    """
    key = str(name).lower()
    if key not in LOSS_CONSTANTS:
        raise ValueError(
            f"unknown loss {name!r}: expected one of {', '.join(sorted(LOSS_CONSTANTS))}"
        )
    return LOSS_CONSTANTS[key]


def _positive(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if np.any(~np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"invalid {name}={value!r}: expected finite values > 0")
    return array


def _times(t: Any) -> np.ndarray:
    array = np.asarray(t, dtype=np.float64)
    if np.any(np.isnan(array)) or np.any(array < 0):
        raise ValueError(f"invalid time t={t!r}: expected values >= 0")
    return array


def angle_between(u: Any, v: Any) -> Any:
    """Return the angle in radians between ``u`` and ``v`` along the last axis.

    Uses ``2 atan2(|u^ - v^|, |u^ + v^|)`` with unit vectors ``u^, v^``,
    which stays accurate to about 1e-16 near 0, where ``arccos`` of the
    cosine loses half the digits (``arccos(1 - 1e-16)`` is already 1.5e-8).

    Parameters
    ----------
    u, v
        Arrays or tensors of shape (..., d), broadcastable. Tensors give a
        tensor, anything else a NumPy array.

    Raises
    ------
    ValueError
        If a vector has zero norm (its direction is undefined).
    """
    if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
        u_t, v_t = torch.as_tensor(u), torch.as_tensor(v)
        u_norm = torch.linalg.vector_norm(u_t, dim=-1, keepdim=True)
        v_norm = torch.linalg.vector_norm(v_t, dim=-1, keepdim=True)
        if bool((u_norm == 0).any()) or bool((v_norm == 0).any()):
            raise ValueError("angle_between: a vector has zero norm, so its direction is undefined")
        u_hat, v_hat = u_t / u_norm, v_t / v_norm
        diff = torch.linalg.vector_norm(u_hat - v_hat, dim=-1)
        total = torch.linalg.vector_norm(u_hat + v_hat, dim=-1)
        return 2.0 * torch.atan2(diff, total)
    u_a, v_a = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    u_norm = np.linalg.norm(u_a, axis=-1, keepdims=True)
    v_norm = np.linalg.norm(v_a, axis=-1, keepdims=True)
    if np.any(u_norm == 0) or np.any(v_norm == 0):
        raise ValueError("angle_between: a vector has zero norm, so its direction is undefined")
    u_hat, v_hat = u_a / u_norm, v_a / v_norm
    diff = np.linalg.norm(u_hat - v_hat, axis=-1)
    total = np.linalg.norm(u_hat + v_hat, axis=-1)
    return 2.0 * np.arctan2(diff, total)


def label_weighted_mean(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Return ``m = (1/N) sum_j s_j x_j``, the first boundary direction.

    Parameters
    ----------
    x
        Embeddings, shape (..., N, d).
    s
        Labels in {+1, -1}, shape (..., N); the batch dimensions of ``x``
        and ``s`` broadcast (one set of embeddings, many label vectors).

    Returns
    -------
    Tensor of the broadcast batch shape plus (d,), in ``x``'s dtype.

    Raises
    ------
    ValueError
        If the shapes do not match or broadcast.
    """
    x, s = torch.as_tensor(x), torch.as_tensor(s)
    if x.ndim < 2 or s.ndim < 1 or s.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"invalid shapes x {tuple(x.shape)} and s {tuple(s.shape)}: expected x (..., N, d) and s (..., N)"
        )
    try:
        torch.broadcast_shapes(x.shape[:-2], s.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"invalid shapes x {tuple(x.shape)} and s {tuple(s.shape)}: batch dimensions do not broadcast"
        ) from None
    s = s.to(x.dtype)
    return (s.unsqueeze(-1) * x).mean(dim=-2)  # (..., d)


def second_moment_max_eigenvalue(x: torch.Tensor) -> torch.Tensor:
    """Return ``lambda_max(S)``, ``S = (1/N) sum_j x_j x_j^T``, batched.

    Computed from the singular values of ``x / sqrt(N)``, so it costs
    O(N d min(N, d)) and never forms ``S``. For unit rows the value is at
    most 1 because ``trace S = 1``.

    Parameters
    ----------
    x
        Embeddings, shape (..., N, d).

    Returns
    -------
    Tensor of shape (...).
    """
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"invalid shape {tuple(x.shape)}: expected x of shape (..., N, d)")
    n_rows = x.shape[-2]
    top = torch.linalg.matrix_norm(x, ord=2)  # (...,) largest singular value
    return top**2 / n_rows


def first_order_angle_rate(
    x: torch.Tensor, s: torch.Tensor, *, beta: float, tau: float = 1.0, f_second_at_zero: float
) -> torch.Tensor:
    """Return the initial speed ``lim_{t -> 0} theta(t) / t`` of the boundary.

    Expanding ``f'(r) = f'(0) + f''(0) r + o(r)`` in the flow gives
    ``Delta(t) = (2 beta c0 t / tau) (m - beta^2 f''(0) (t / tau) S m) + o(t^2)``,
    so the angle to ``m`` grows like

    .. math:: \\theta(t) \\approx \\frac{\\beta^2 |f''(0)|\\, t}{\\tau}\\,
              |P_\\perp S \\hat m|, \\qquad P_\\perp = I - \\hat m \\hat m^T .

    This is a rate at ``t -> 0``, not a bound. It depends on the direction of
    ``m`` relative to ``S`` and not on ``|m|``.

    Parameters
    ----------
    x, s
        Embeddings (..., N, d) and labels (..., N); the batch dimensions
        broadcast.
    beta, tau
        GPO temperature and inverse learning rate (both > 0).
    f_second_at_zero
        ``f''(0)``: 1/4 for DPO, 2 for IPO.

    Returns
    -------
    Tensor of shape (...), in radians per unit time.
    """
    _positive("beta", beta)
    _positive("tau", tau)
    m = label_weighted_mean(x, s)  # (..., d)
    m_hat = m / torch.linalg.vector_norm(m, dim=-1, keepdim=True)
    n_rows = x.shape[-2]
    # S m^ = (1/N) X^T (X m^) without forming S.
    projections = (x @ m_hat.unsqueeze(-1)).squeeze(-1)  # (..., N)
    s_m = (projections.unsqueeze(-2) @ x).squeeze(-2) / n_rows  # (..., d)
    s_m_perp = s_m - (s_m * m_hat).sum(-1, keepdim=True) * m_hat  # (..., d)
    return beta**2 * abs(f_second_at_zero) * torch.linalg.vector_norm(s_m_perp, dim=-1) / tau


def gronwall_ratio(t: Any, *, beta: float, tau: float, curvature_bound: float, lambda_max: Any) -> np.ndarray:
    """Return ``rho_G(t) = (exp(k t) - 1 - k t) / (k t)``, ``k = 2 beta^2 M lambda / tau``.

    Bounds ``|E(t)| / ((2 beta c0 t / tau) |m|)``, the relative size of the
    part of ``Delta(t)`` that is not along ``m``, for any loss whose second
    derivative is bounded by ``M`` (IPO included: no bound on ``f'`` is
    needed). Derivation: ``|dE/dt| <= (2 beta / tau) sqrt(lambda) M
    sqrt(mean_j r_j^2) <= k |Delta| <= k (|main| + |E|)``, then Gronwall's
    inequality with ``|main(s)|`` linear in ``s``.

    Parameters
    ----------
    t
        Times >= 0 (array-like). At ``t = 0`` the ratio is 0.
    beta, tau
        GPO temperature and inverse learning rate (> 0).
    curvature_bound
        ``M = sup |f''|`` (> 0): 1/4 for DPO, 2 for IPO.
    lambda_max
        ``lambda_max(S)`` or any upper bound on it (> 0); 1 is always valid
        for unit embeddings.

    Returns
    -------
    ndarray broadcast over ``t`` and ``lambda_max``.
    """
    t = _times(t)
    beta, tau = _positive("beta", beta), _positive("tau", tau)
    curvature_bound = _positive("curvature_bound", curvature_bound)
    lambda_max = _positive("lambda_max", lambda_max)
    u = 2.0 * beta**2 * curvature_bound * lambda_max * t / tau
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = (np.expm1(u) - u) / u
    # Below u = 1e-4 the subtraction loses digits; the series u/2 + u^2/6 is exact to 1e-13 there.
    small = u < 1e-4
    return np.where(small, u / 2.0 + u**2 / 6.0, ratio)


def linear_growth_ratio(
    t: Any,
    *,
    beta: float,
    tau: float,
    curvature_bound: float,
    lambda_max: Any,
    m_norm: Any,
    slope_at_zero: float,
    derivative_bound: float,
) -> np.ndarray:
    """Return ``rho_L(t) = beta^2 M G lambda t / (c0 tau |m|)``.

    Valid when ``|f'| <= G`` everywhere (DPO: ``G = 1``) and the embeddings
    have norm at most 1. Derivation: ``|dr_i/dt| <= (2 beta^2 / tau) G
    sqrt(lambda)``, so ``|r_i(s)| <= 2 beta^2 G sqrt(lambda) s / tau``; then
    ``|dE/ds| <= (2 beta / tau) sqrt(lambda) M max_i |r_i(s)|`` integrates
    to ``|E(t)| <= 2 beta^3 M G lambda t^2 / tau^2``, and dividing by
    ``|main(t)| = 2 beta c0 t |m| / tau`` gives the ratio. It is the form of
    the paper's bound: the stable time grows with ``|m|``.

    Parameters
    ----------
    t
        Times >= 0.
    beta, tau, curvature_bound, lambda_max
        As in :func:`gronwall_ratio`.
    m_norm
        ``|m|`` (> 0), the norm of the label-weighted mean.
    slope_at_zero
        ``c0 = -f'(0)`` (> 0): 1/2 for DPO.
    derivative_bound
        ``G = sup |f'|`` (> 0): 1 for DPO.

    Returns
    -------
    ndarray broadcast over the array arguments.
    """
    t = _times(t)
    beta, tau = _positive("beta", beta), _positive("tau", tau)
    curvature_bound = _positive("curvature_bound", curvature_bound)
    lambda_max = _positive("lambda_max", lambda_max)
    m_norm = _positive("m_norm", m_norm)
    slope_at_zero = _positive("slope_at_zero", slope_at_zero)
    derivative_bound = _positive("derivative_bound", derivative_bound)
    return beta**2 * curvature_bound * derivative_bound * lambda_max * t / (slope_at_zero * tau * m_norm)


def angle_bound(
    t: Any,
    *,
    beta: float,
    tau: float = 1.0,
    curvature_bound: float,
    lambda_max: Any = 1.0,
    m_norm: Any | None = None,
    slope_at_zero: float | None = None,
    derivative_bound: float | None = None,
) -> np.ndarray:
    """Return the book's bound on the angle between ``Delta(t)`` and ``m``.

    .. math:: \\theta(t) \\le \\arcsin \\min(\\rho_G(t), \\rho_L(t))
              \\quad\\text{while the minimum is below } 1,

    with :func:`gronwall_ratio` and :func:`linear_growth_ratio`. The second
    ratio enters only when ``m_norm``, ``slope_at_zero`` and
    ``derivative_bound`` are all given. Where the minimum is 1 or more the
    bound is uninformative, and the value returned is ``pi``.

    Parameters
    ----------
    t
        Times >= 0.
    beta, tau
        GPO temperature and inverse learning rate (> 0).
    curvature_bound
        ``M = sup |f''|`` (> 0).
    lambda_max
        ``lambda_max(S)`` or an upper bound on it; default 1, valid for unit
        embeddings.
    m_norm, slope_at_zero, derivative_bound
        ``|m|``, ``c0 = -f'(0)`` and ``G = sup|f'|`` for the linear-growth
        ratio; leave any of them ``None`` to use the Gronwall ratio alone
        (the only choice for IPO, whose ``f'`` is unbounded).

    Returns
    -------
    ndarray of angles in radians, in [0, pi/2) or equal to pi.

    Examples
    --------
    >>> from noisypo.bounds_motion import angle_bound
    >>> float(angle_bound(0.0, beta=1.0, curvature_bound=0.25))
    0.0
    """
    ratio = gronwall_ratio(t, beta=beta, tau=tau, curvature_bound=curvature_bound, lambda_max=lambda_max)
    extras = (m_norm, slope_at_zero, derivative_bound)
    if any(value is not None for value in extras) and not all(value is not None for value in extras):
        raise ValueError(
            "angle_bound: give all of m_norm, slope_at_zero and derivative_bound "
            "for the linear-growth ratio, or none of them"
        )
    if all(value is not None for value in extras):
        linear = linear_growth_ratio(
            t,
            beta=beta,
            tau=tau,
            curvature_bound=curvature_bound,
            lambda_max=lambda_max,
            m_norm=m_norm,
            slope_at_zero=slope_at_zero,
            derivative_bound=derivative_bound,
        )
        ratio = np.minimum(ratio, linear)
    with np.errstate(invalid="ignore"):
        return np.where(ratio < 1.0, np.arcsin(np.minimum(ratio, 1.0)), np.pi)


def _angle(angle: Any) -> np.ndarray:
    array = np.asarray(angle, dtype=np.float64)
    if np.any(~(array > 0)) or np.any(array > np.pi / 2):
        raise ValueError(f"invalid angle={angle!r}: expected radians in (0, pi/2]")
    return array


def gronwall_stable_time(
    angle: Any, *, beta: float, tau: float = 1.0, curvature_bound: float, lambda_max: Any = 1.0
) -> np.ndarray:
    """Return the time up to which the Gronwall ratio keeps the angle below ``angle``.

    Solves ``rho_G(t) = sin(angle)``, that is ``(e^u - 1 - u) / u = sin(angle)``
    with ``u = k t`` and ``k = 2 beta^2 M lambda / tau``, by bisection on
    ``[0, 2 sin(angle)]`` (``rho_G(u) >= u / 2`` brackets the root). For small
    angles ``t ~ tau sin(angle) / (beta^2 M lambda)``.

    Parameters
    ----------
    angle
        Angles in radians, in (0, pi/2].
    beta, tau, curvature_bound, lambda_max
        As in :func:`gronwall_ratio`.

    Returns
    -------
    ndarray broadcast over ``angle`` and ``lambda_max``.
    """
    target = np.sin(_angle(angle))
    beta, tau = _positive("beta", beta), _positive("tau", tau)
    curvature_bound = _positive("curvature_bound", curvature_bound)
    lambda_max = _positive("lambda_max", lambda_max)
    low = np.zeros_like(target)
    high = 2.0 * target
    for _ in range(80):  # 80 halvings of an interval below 2: far below float64 spacing
        middle = 0.5 * (low + high)
        value = (np.expm1(middle) - middle) / middle
        above = value > target
        high = np.where(above, middle, high)
        low = np.where(above, low, middle)
    u = 0.5 * (low + high)
    return u * tau / (2.0 * beta**2 * curvature_bound * lambda_max)


def linear_growth_stable_time(
    angle: Any,
    *,
    beta: float,
    tau: float = 1.0,
    curvature_bound: float,
    lambda_max: Any = 1.0,
    m_norm: Any,
    slope_at_zero: float,
    derivative_bound: float,
) -> np.ndarray:
    """Return ``c0 tau |m| sin(angle) / (beta^2 M G lambda)``, where ``rho_L = sin(angle)``.

    This is the stable time in the form the paper gives it, proportional to
    ``tau |m| / (beta^2 M)``: a smaller ``|m|`` (more label noise) shortens it.

    Parameters
    ----------
    angle
        Angles in radians, in (0, pi/2].
    beta, tau, curvature_bound, lambda_max, m_norm, slope_at_zero, derivative_bound
        As in :func:`linear_growth_ratio`.
    """
    target = np.sin(_angle(angle))
    beta, tau = _positive("beta", beta), _positive("tau", tau)
    curvature_bound = _positive("curvature_bound", curvature_bound)
    lambda_max = _positive("lambda_max", lambda_max)
    m_norm = _positive("m_norm", m_norm)
    slope_at_zero = _positive("slope_at_zero", slope_at_zero)
    derivative_bound = _positive("derivative_bound", derivative_bound)
    return slope_at_zero * tau * m_norm * target / (beta**2 * curvature_bound * derivative_bound * lambda_max)


def stable_time(
    angle: Any,
    *,
    beta: float,
    tau: float = 1.0,
    curvature_bound: float,
    lambda_max: Any = 1.0,
    m_norm: Any | None = None,
    slope_at_zero: float | None = None,
    derivative_bound: float | None = None,
) -> np.ndarray:
    """Return the guaranteed stable time: the angle stays at most ``angle`` before it.

    Both ratios increase in ``t``, so ``min(rho_G, rho_L) <= sin(angle)``
    holds exactly for ``t`` up to the larger of :func:`gronwall_stable_time`
    and :func:`linear_growth_stable_time`. Arguments as in :func:`angle_bound`.
    """
    extras = (m_norm, slope_at_zero, derivative_bound)
    time = gronwall_stable_time(
        angle, beta=beta, tau=tau, curvature_bound=curvature_bound, lambda_max=lambda_max
    )
    if any(value is not None for value in extras) and not all(value is not None for value in extras):
        raise ValueError(
            "stable_time: give all of m_norm, slope_at_zero and derivative_bound "
            "for the linear-growth ratio, or none of them"
        )
    if all(value is not None for value in extras):
        linear = linear_growth_stable_time(
            angle,
            beta=beta,
            tau=tau,
            curvature_bound=curvature_bound,
            lambda_max=lambda_max,
            m_norm=m_norm,
            slope_at_zero=slope_at_zero,
            derivative_bound=derivative_bound,
        )
        time = np.maximum(time, linear)
    return time


def hinge_first_crossing_time(
    x: torch.Tensor, s: torch.Tensor, *, beta: float, tau: float = 1.0
) -> torch.Tensor:
    """Return the time at which the first SLiC margin reaches 1, batched.

    While every margin is below 1 the hinge has ``f' = -1``, so the flow is
    ``tau dDelta/dt = 2 beta m`` and ``Delta(t) = (2 beta t / tau) m``
    exactly. The margins are then ``r_j(t) = (2 beta^2 t / tau) s_j m . x_j``
    and the first reaches 1 at

    .. math:: T_1 = \\frac{\\tau}{2 \\beta^2 \\max_j s_j\\, m \\cdot x_j} .

    The maximum is positive because its average over ``j`` is ``|m|^2``.

    Parameters
    ----------
    x, s
        Embeddings (..., N, d) and labels (..., N).
    beta, tau
        GPO temperature and inverse learning rate (> 0).

    Returns
    -------
    Tensor of shape (...).
    """
    _positive("beta", beta)
    _positive("tau", tau)
    m = label_weighted_mean(x, s)  # (..., d)
    projections = torch.as_tensor(s).to(m.dtype) * (x @ m.unsqueeze(-1)).squeeze(-1)  # (..., N)
    return tau / (2.0 * beta**2 * projections.amax(dim=-1))


def hinge_crossing_time_lower_bound(m_norm: Any, *, beta: float, tau: float = 1.0) -> np.ndarray:
    """Return ``tau / (2 beta^2 |m|)``, a lower bound on the first SLiC crossing time.

    For unit embeddings ``s_j m . x_j <= |m|``, so no margin reaches 1 before
    this time and SLiC's boundary is exactly ``m``'s until then. Unlike the
    smooth losses, a smaller ``|m|`` lengthens this time.
    """
    m_norm = _positive("m_norm", m_norm)
    beta, tau = _positive("beta", beta), _positive("tau", tau)
    return tau / (2.0 * beta**2 * m_norm)


def expected_m_norm(d: int, kappa: float, phi: float, n: int, epsilon: Any) -> np.ndarray:
    """Return ``sqrt(E|m|^2)`` for ``n`` vMF samples per class with flip rate ``epsilon``.

    Each label is flipped independently with probability ``epsilon``, so the
    ``N = 2n`` terms ``s_j x_j`` are independent with mean
    ``+-(1 - 2 epsilon) A_d(kappa) mu_+-`` and squared norm 1. Hence

    .. math:: E|m|^2 = (1 - 2\\epsilon)^2 A_d(\\kappa)^2 \\sin^2(\\phi/2)
              + \\frac{1 - (1 - 2\\epsilon)^2 A_d(\\kappa)^2}{2n},

    with ``A_d = I_{d/2} / I_{d/2-1}`` from :func:`noisypo.vmf.mean_resultant_length`.

    Parameters
    ----------
    d
        Dimension (>= 2).
    kappa
        Concentration (> 0).
    phi
        Angle between the class means, in (0, pi].
    n
        Samples per class (>= 1).
    epsilon
        Flip rates in [0, 1] (array-like).
    """
    from noisypo.vmf import mean_resultant_length

    if int(d) != d or d < 2:
        raise ValueError(f"invalid d={d!r}: expected an integer >= 2")
    if int(n) != n or n < 1:
        raise ValueError(f"invalid n={n!r}: expected an integer >= 1")
    _positive("kappa", kappa)
    if not 0 < phi <= np.pi:
        raise ValueError(f"invalid phi={phi!r}: expected an angle in (0, pi]")
    epsilon = np.asarray(epsilon, dtype=np.float64)
    if np.any(~((epsilon >= 0) & (epsilon <= 1))):
        raise ValueError(f"invalid epsilon={epsilon!r}: expected rates in [0, 1]")
    resultant = float(mean_resultant_length(d, kappa))
    signal = ((1.0 - 2.0 * epsilon) * resultant) ** 2
    return np.sqrt(signal * np.sin(phi / 2.0) ** 2 + (1.0 - signal) / (2 * n))
