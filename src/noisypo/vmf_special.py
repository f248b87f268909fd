"""Exact special functions of the von Mises-Fisher distribution.

For x ~ vMF(mu, kappa) on the unit sphere S^{d-1} in R^d the density is

.. math::

    f(x) = C_d(\\kappa) \\exp(\\kappa \\mu^\\top x), \\qquad
    C_d(\\kappa) = \\frac{\\kappa^{d/2-1}}{(2\\pi)^{d/2} I_{d/2-1}(\\kappa)},

with :math:`I_\\nu` the modified Bessel function of the first kind. This
module evaluates :math:`\\log C_d`, the mean resultant length
:math:`A_d(\\kappa) = I_{d/2}(\\kappa) / I_{d/2-1}(\\kappa)` and the law of
the projection :math:`w = \\mu^\\top x` in float64 for every d >= 2 and
kappa >= 0, including the large-order, small-kappa corner where
``scipy.special.ive`` underflows to zero.

How :math:`\\log I_\\nu(\\kappa)` is computed:

* order :math:`\\nu < 50`: ``log(ive(nu, kappa)) + kappa``, and the power
  series in log space where ``ive`` underflows (tiny kappa);
* order :math:`\\nu \\ge 50`: the uniform asymptotic (Debye) expansion
  (DLMF 10.41.3) with 12 correction terms, whose truncation error is below
  :math:`50^{-12}` relative.

:math:`A_d` uses the ratio of ``ive`` values for small orders and, for large
orders, the difference of two Debye expansions written so that the O(kappa)
leading terms cancel analytically; this keeps the relative error near
machine precision even at kappa = 1e6.

References
----------
.. [1] NIST Digital Library of Mathematical Functions, section 10.41,
   https://dlmf.nist.gov/10.41
.. [2] K. V. Mardia and P. E. Jupp, *Directional Statistics*, Wiley, 2000.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import special

__all__ = [
    "log_bessel_iv",
    "log_normalizer",
    "mean_resultant_length",
    "w_cdf",
    "w_logpdf",
    "w_moments",
    "w_pdf",
]

_DEBYE_MIN_ORDER = 50.0
_DEBYE_TERMS = 12
_LOG_2PI = float(np.log(2.0 * np.pi))
# Smallest ive value that still has full float64 precision.
_IVE_TINY = 1e-290


def _debye_polynomials(count: int) -> list[np.ndarray]:
    """Return the coefficients (ascending powers of t) of u_0, ..., u_{count-1}.

    Recurrence (DLMF 10.41.9):
    u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + (1/8) int_0^t (1 - 5 s^2) u_k(s) ds,
    computed exactly with fractions and converted to float64 once.
    """
    polys = [[Fraction(1)]]
    for _ in range(count - 1):
        u = polys[-1]
        size = len(u) + 3
        nxt = [Fraction(0)] * size
        # t^2 (1 - t^2) u'(t) / 2
        for power in range(1, len(u)):
            term = u[power] * power / 2
            nxt[power + 1] += term
            nxt[power + 3] -= term
        # (1/8) int_0^t (1 - 5 s^2) u(s) ds
        for power, coef in enumerate(u):
            nxt[power + 1] += coef / 8 / (power + 1)
            nxt[power + 3] -= 5 * coef / 8 / (power + 3)
        while len(nxt) > 1 and nxt[-1] == 0:
            nxt.pop()
        polys.append(nxt)
    return [np.array([float(c) for c in p]) for p in polys]


_DEBYE_U = _debye_polynomials(_DEBYE_TERMS)


def _debye_log_series(nu: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Return log(sum_k u_k(t) / nu^k), the Debye correction factor."""
    total = np.zeros_like(t)
    inv_nu = 1.0 / nu
    scale = np.ones_like(t)
    for coefs in _DEBYE_U[1:]:
        scale = scale * inv_nu
        total = total + scale * np.polynomial.polynomial.polyval(t, coefs)
    return np.log1p(total)


def _log_iv_debye(nu: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """log I_nu(kappa) by the uniform asymptotic expansion; nu >= 50, kappa > 0."""
    # With s = sqrt(nu^2 + kappa^2):
    # log I = s + nu log(kappa / (nu + s)) - log(2 pi s) / 2 + log(series(t = nu / s)).
    s = np.hypot(nu, kappa)
    t = nu / s
    return (
        s
        + nu * np.log(kappa / (nu + s))
        - 0.5 * (_LOG_2PI + np.log(s))
        + _debye_log_series(nu, t)
    )


def _log_iv_series(nu: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """log I_nu(kappa) by the power series (DLMF 10.25.2); accurate for kappa^2 << nu + 1."""
    q = 0.25 * kappa * kappa
    total = np.ones_like(kappa)
    term = np.ones_like(kappa)
    for m in range(1, 40):
        term = term * q / (m * (nu + m))
        total = total + term
    return nu * np.log(0.5 * kappa) - special.gammaln(nu + 1.0) + np.log(total)


def log_bessel_iv(nu, kappa) -> np.ndarray:
    """Return log I_nu(kappa) in float64 for nu >= 0 and kappa > 0 (no input checks).

    See the module docstring for the three regimes.
    """
    nu, kappa = np.broadcast_arrays(np.asarray(nu, dtype=float), np.asarray(kappa, dtype=float))
    out = np.empty(nu.shape)
    large = nu >= _DEBYE_MIN_ORDER
    if large.any():
        out[large] = _log_iv_debye(nu[large], kappa[large])
    small = ~large
    if small.any():
        nus, ks = nu[small], kappa[small]
        with np.errstate(divide="ignore"):
            scaled = special.ive(nus, ks)
        good = scaled > _IVE_TINY
        vals = np.empty(nus.shape)
        vals[good] = np.log(scaled[good]) + ks[good]
        vals[~good] = _log_iv_series(nus[~good], ks[~good])
        out[small] = vals
    return out


def _check_d_kappa(d, kappa) -> tuple[np.ndarray, np.ndarray]:
    """Validate and broadcast the dimension and the concentration."""
    d_arr = np.asarray(d)
    kappa_arr = np.asarray(kappa, dtype=float)
    if d_arr.dtype.kind not in "iuf":
        raise TypeError(f"d must be an integer or an array of integers, got dtype {d_arr.dtype}")
    if np.any(~np.isfinite(d_arr)) or np.any(d_arr != np.round(d_arr)):
        raise ValueError(f"d must be a whole number, got {d!r}")
    if np.any(d_arr < 2):
        raise ValueError(f"d must be >= 2 (the sphere S^(d-1) in R^d), got min {d_arr.min()}")
    if np.any(np.isnan(kappa_arr)):
        raise ValueError("kappa contains NaN")
    if np.any(kappa_arr < 0):
        raise ValueError(f"kappa must be >= 0, got min {kappa_arr.min()}")
    if np.any(np.isinf(kappa_arr)):
        raise ValueError("kappa must be finite, got inf")
    d_arr, kappa_arr = np.broadcast_arrays(d_arr.astype(float), kappa_arr)
    return d_arr, kappa_arr


def log_normalizer(d, kappa) -> np.ndarray:
    """Return log C_d(kappa), the log normalising constant of vMF on S^{d-1}.

    .. math::

        \\log C_d(\\kappa) = (d/2 - 1)\\log\\kappa - (d/2)\\log(2\\pi)
            - \\log I_{d/2-1}(\\kappa),

    and at kappa = 0, minus the log surface area of S^{d-1},
    :math:`\\log\\Gamma(d/2) - \\log 2 - (d/2)\\log\\pi`.

    Parameters
    ----------
    d : int or array_like of int
        Ambient dimension, d >= 2.
    kappa : float or array_like
        Concentration, kappa >= 0 and finite. Broadcasts against ``d``.

    Returns
    -------
    numpy.ndarray
        float64 array of the broadcast shape.

    Raises
    ------
    ValueError
        If d < 2 or d is not a whole number, or kappa is negative, NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> bool(np.isclose(log_normalizer(3, 2.0), np.log(2.0 / (4 * np.pi * np.sinh(2.0)))))
    True
    """
    d, kappa = _check_d_kappa(d, kappa)
    nu = 0.5 * d - 1.0
    out = special.gammaln(0.5 * d) - np.log(2.0) - 0.5 * d * np.log(np.pi)
    out = np.array(out, dtype=float)
    pos = kappa > 0
    if pos.any():
        nu_p, k_p, d_p = nu[pos], kappa[pos], d[pos]
        out[pos] = nu_p * np.log(k_p) - 0.5 * d_p * _LOG_2PI - log_bessel_iv(nu_p, k_p)
    return out


def _log_ratio_debye(nu: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """log(I_{nu+1}(kappa) / I_nu(kappa)) from two Debye expansions, without cancellation."""
    s0 = np.hypot(nu, kappa)
    s1 = np.hypot(nu + 1.0, kappa)
    ds = (2.0 * nu + 1.0) / (s0 + s1)  # s1 - s0
    # (s1 - s0) + (nu + 1) log(kappa / (nu + 1 + s1)) - nu log(kappa / (nu + s0))
    lead = ds + np.log(kappa / (nu + 1.0 + s1)) - nu * np.log1p((1.0 + ds) / (nu + s0))
    half = -0.5 * np.log1p(ds / s0)
    series = _debye_log_series(nu + 1.0, (nu + 1.0) / s1) - _debye_log_series(nu, nu / s0)
    return lead + half + series


def mean_resultant_length(d, kappa) -> np.ndarray:
    """Return A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E[mu . x].

    A_d increases from 0 at kappa = 0 (slope 1/d) to 1 as kappa grows, with
    A_d(kappa) ~ 1 - (d - 1) / (2 kappa) for large kappa. It is also
    :math:`-\\frac{d}{d\\kappa}\\log C_d(\\kappa)`.

    Parameters
    ----------
    d : int or array_like of int
        Ambient dimension, d >= 2.
    kappa : float or array_like
        Concentration, kappa >= 0 and finite.

    Returns
    -------
    numpy.ndarray
        float64 values in [0, 1).

    Raises
    ------
    ValueError
        If d < 2 or kappa is negative, NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> k = 3.0
    >>> bool(np.isclose(mean_resultant_length(3, k), 1 / np.tanh(k) - 1 / k))
    True
    """
    d, kappa = _check_d_kappa(d, kappa)
    nu = 0.5 * d - 1.0
    out = np.zeros(d.shape)
    pos = kappa > 0
    large = pos & (nu >= _DEBYE_MIN_ORDER)
    if large.any():
        out[large] = np.exp(_log_ratio_debye(nu[large], kappa[large]))
    small = pos & ~large
    if small.any():
        nus, ks = nu[small], kappa[small]
        with np.errstate(divide="ignore", invalid="ignore"):
            num = special.ive(nus + 1.0, ks)
            den = special.ive(nus, ks)
        good = (num > _IVE_TINY) & (den > _IVE_TINY)
        vals = np.empty(nus.shape)
        vals[good] = num[good] / den[good]
        bad = ~good
        vals[bad] = np.exp(
            _log_iv_series(nus[bad] + 1.0, ks[bad]) - _log_iv_series(nus[bad], ks[bad])
        )
        out[small] = vals
    return out


def _log_w_normalizer(d: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """log of C_d(kappa) times the surface area of S^{d-2}."""
    log_area = np.log(2.0) + 0.5 * (d - 1.0) * np.log(np.pi) - special.gammaln(0.5 * (d - 1.0))
    return log_normalizer(d, kappa) + log_area


def w_logpdf(w, d, kappa) -> np.ndarray:
    """Return the log density of w = mu . x for x ~ vMF(mu, kappa) on S^{d-1}.

    .. math::

        f_w(w) = C_d(\\kappa)\\,|S^{d-2}|\\,e^{\\kappa w}(1 - w^2)^{(d-3)/2},
        \\qquad -1 < w < 1,

    with :math:`|S^{d-2}| = 2\\pi^{(d-1)/2}/\\Gamma((d-1)/2)`. Outside
    [-1, 1] the log density is -inf; at w = +-1 it is +inf for d = 2,
    finite for d = 3 and -inf for d > 3.

    Parameters
    ----------
    w : array_like
        Points; broadcasts against ``d`` and ``kappa``.
    d : int or array_like of int
        Ambient dimension, d >= 2.
    kappa : float or array_like
        Concentration, kappa >= 0.

    Raises
    ------
    ValueError
        If d < 2, kappa < 0 or w contains NaN.
    """
    w_arr = np.asarray(w, dtype=float)
    if np.any(np.isnan(w_arr)):
        raise ValueError("w contains NaN")
    d_arr, kappa_arr = _check_d_kappa(d, kappa)
    w_arr, d_arr, kappa_arr = np.broadcast_arrays(w_arr, d_arr, kappa_arr)
    inside = (w_arr >= -1.0) & (w_arr <= 1.0)
    wc = np.clip(w_arr, -1.0, 1.0)
    power = 0.5 * (d_arr - 3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # (1 - w)(1 + w) keeps precision near w = +-1; power = 0 for d = 3.
        log_base = np.log1p(-wc) + np.log1p(wc)
        tail = np.where(power == 0.0, 0.0, power * log_base)
    out = _log_w_normalizer(d_arr, kappa_arr) + kappa_arr * wc + tail
    return np.where(inside, out, -np.inf)


def w_pdf(w, d, kappa) -> np.ndarray:
    """Return the density of w = mu . x; see :func:`w_logpdf`."""
    return np.exp(w_logpdf(w, d, kappa))


# Gauss-Legendre rule used on every sub-interval by w_cdf.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def _theta_log_integrand(theta, d, kappa, log_norm):
    """log of C |S^{d-2}| e^{kappa cos theta} sin^{d-2} theta (density of theta = arccos w)."""
    with np.errstate(divide="ignore"):
        log_sin = np.log(np.sin(theta))
    tail = np.where(d == 2.0, 0.0, (d - 2.0) * log_sin)
    return log_norm + kappa * np.cos(theta) + tail


def _w_cdf_scalar_params(w: np.ndarray, d: float, kappa: float) -> np.ndarray:
    """CDF of w at many points for one (d, kappa): composite Gauss-Legendre in theta."""
    # P(W <= w) = int_{arccos w}^{pi} C |S^{d-2}| e^{kappa cos t} sin^{d-2} t dt, whose
    # integrand is smooth (no endpoint singularity, even for d = 2).
    log_norm = float(_log_w_normalizer(np.array(d), np.array(kappa)))
    # Mode and width of the integrand in theta (Laplace approximation).
    cos_mode = 2.0 * kappa / ((d - 2.0) + np.sqrt((d - 2.0) ** 2 + 4.0 * kappa**2)) if kappa > 0 else 0.0
    mode = float(np.arccos(cos_mode))
    curvature = kappa * cos_mode + (d - 2.0) / max(np.sin(mode) ** 2, 1e-300)
    width = min(1.0, 1.0 / np.sqrt(curvature)) if curvature > 0 else 1.0
    grid = np.concatenate(
        [
            np.linspace(0.0, np.pi, 257),
            mode + width * np.linspace(-60.0, 60.0, 481),
        ]
    )
    theta_q = np.arccos(np.clip(w, -1.0, 1.0))
    breaks = np.unique(np.clip(np.concatenate([grid, theta_q]), 0.0, np.pi))
    lo, hi = breaks[:-1], breaks[1:]
    half = 0.5 * (hi - lo)
    nodes = 0.5 * (hi + lo)[:, None] + half[:, None] * _GL_NODES[None, :]
    vals = np.exp(_theta_log_integrand(nodes, d, kappa, log_norm))
    pieces = half * (vals @ _GL_WEIGHTS)
    # Mass above each break point, accumulated from theta = pi down.
    upper = np.concatenate([np.cumsum(pieces[::-1])[::-1], [0.0]])
    cdf = upper[np.searchsorted(breaks, theta_q)]
    return np.clip(cdf, 0.0, 1.0)


def w_cdf(w, d, kappa) -> np.ndarray:
    """Return P(mu . x <= w) for x ~ vMF(mu, kappa) on S^{d-1}.

    The CDF is an integral over theta = arccos(w) of the smooth density
    :math:`C_d(\\kappa)|S^{d-2}| e^{\\kappa\\cos\\theta}\\sin^{d-2}\\theta`,
    computed by 24-point Gauss-Legendre rules on a grid that is uniform on
    [0, pi] and refined around the mode. Accumulating from theta = pi keeps
    small lower-tail probabilities accurate in relative terms.

    Parameters
    ----------
    w : array_like
        Points (values outside [-1, 1] give 0 or 1).
    d : int
        Ambient dimension, d >= 2 (a scalar).
    kappa : float
        Concentration, kappa >= 0 (a scalar).

    Raises
    ------
    ValueError
        If d < 2, kappa < 0, d or kappa is not a scalar, or w contains NaN.
    """
    w_arr = np.asarray(w, dtype=float)
    if np.any(np.isnan(w_arr)):
        raise ValueError("w contains NaN")
    d_arr, kappa_arr = _check_d_kappa(d, kappa)
    if d_arr.ndim or kappa_arr.ndim:
        raise ValueError(
            f"w_cdf takes a scalar d and kappa, got shapes {np.shape(d)} and {np.shape(kappa)}; "
            "loop over the parameter values"
        )
    flat = w_arr.ravel()
    out = _w_cdf_scalar_params(flat, float(d_arr), float(kappa_arr))
    out = np.where(flat < -1.0, 0.0, np.where(flat >= 1.0, 1.0, out))
    return out.reshape(w_arr.shape)


def w_moments(d, kappa) -> tuple[np.ndarray, np.ndarray]:
    """Return (E[w], E[w^2]) for w = mu . x, x ~ vMF(mu, kappa) on S^{d-1}.

    .. math::

        E[w] = A_d(\\kappa), \\qquad E[w^2] = 1 - (d - 1)\\,A_d(\\kappa)/\\kappa,

    because each of the d - 1 directions orthogonal to mu carries second
    moment :math:`A_d(\\kappa)/\\kappa`. At kappa = 0, E[w^2] = 1/d.

    Raises
    ------
    ValueError
        If d < 2 or kappa is negative, NaN or inf.
    """
    d_arr, kappa_arr = _check_d_kappa(d, kappa)
    mean = mean_resultant_length(d_arr, kappa_arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(kappa_arr > 0, mean / np.where(kappa_arr > 0, kappa_arr, 1.0), 1.0 / d_arr)
    second = 1.0 - (d_arr - 1.0) * ratio
    return mean, second
