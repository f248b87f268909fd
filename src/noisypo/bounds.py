"""The book's generalization guarantee (Theorem 3.3 / B.4 and Theorem C.2).

The bound chains three steps, each holding on one event of probability at
least ``1 - delta`` over the data set and its labels:

1. the first boundary ``m = (1/N) sum_j s_j x_j`` is within the angle
   ``theta_0 = arccos(cos_lower)`` of the Bayes direction
   ``u* = (mu_+ - mu_-) / |mu_+ - mu_-|`` (Lemma B.2,
   :func:`noisypo.bounds_b2.cosine_lower_bound`; for uncertain labels
   :func:`uncertain_cosine_lower_bound`);
2. gradient flow moves ``Delta(t)`` by at most the angle ``theta_1(t)``
   away from ``m`` (Lemma B.3, :mod:`noisypo.bounds_motion`), so the angle
   between ``Delta(t)`` and ``u*`` is at most ``psi = theta_0 + theta_1``;
3. every boundary within the angle ``psi < phi / 2`` of ``u*`` has both
   cosines ``u . mu_+`` and ``-u . mu_-`` at least ``sin(phi/2 - psi)``, and
   the exponential-moment (Chernoff) bound on a half-space gives

   .. math::

       P(u \\cdot x < 0) \\le \\frac{C_d(\\kappa)}{C_d(\\kappa\\sqrt{1 - c^2})}
       = \\exp\\Big(-\\int_{\\kappa\\sqrt{1-c^2}}^{\\kappa} A_d(r)\\,dr\\Big)
       \\le \\exp\\big(-d\\, g(\\gamma, c)\\big),

   with ``gamma = kappa / d`` and the closed form ``g`` of
   :func:`tail_exponent` (from ``A_d(r) >= r / (d/2 + sqrt(r^2 + d^2/4))``,
   Laforgia and Natalini, 2010).

So with probability at least ``1 - delta`` the population risk after
training for a time ``t`` is at most ``exp(-d g(gamma, sin(phi/2 - psi)))``.
The constants are the book's own: the paper's statement lost its formulas in
text extraction, and it uses a Laplace-method tail bound on ``w`` where the
book uses the Chernoff bound above.

References
----------
S. Im and Y. Li, "How Well Can Preference Optimization Generalize Under
Noisy Feedback?", arXiv:2510.01458, 2025 (Theorems 3.3, B.4 and C.2).

A. Laforgia and P. Natalini, "Some Inequalities for Modified Bessel
Functions", Journal of Inequalities and Applications 2010, 253035.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from noisypo import bounds_b2

__all__ = [
    "GuaranteeBound",
    "tail_exponent",
    "negative_side_bound",
    "cone_risk_bound",
    "worst_cone_risk",
    "angle_for_risk",
    "motion_angle_bound",
    "generalization_bound",
    "sample_size_threshold",
    "sample_size_closed_form",
    "uncertain_signal",
    "uncertain_cosine_lower_bound",
    "uncertain_generalization_bound",
    "uncertain_sample_size_threshold",
]


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_setting(d, kappa, phi) -> tuple[int, float, float]:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 3:
        raise ValueError(f"invalid dimension d={d!r}: need an integer d >= 3")
    kappa = float(kappa)
    if not (math.isfinite(kappa) and kappa > 0.0):
        raise ValueError(f"invalid kappa={kappa!r}: the concentration must be finite and > 0")
    phi = float(phi)
    if not 0.0 < phi <= math.pi:
        raise ValueError(f"invalid phi={phi!r}: the angle between the means must lie in (0, pi]")
    return int(d), kappa, phi


def _check_probability(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if np.any(~((array > 0.0) & (array < 1.0))):
        raise ValueError(f"invalid {name}={value!r}: expected values in (0, 1)")
    return array


def _check_cosine_positive(c) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if np.any(~((c > 0.0) & (c <= 1.0))):
        raise ValueError(
            f"invalid cosine c={c!r}: the tail bound needs 0 < c <= 1 "
            "(a boundary on the correct side of the class mean)"
        )
    return c


# --------------------------------------------------------------------------
# Step 3: the risk of a boundary close to the Bayes one
# --------------------------------------------------------------------------


def tail_exponent(gamma, c) -> np.ndarray:
    """Return g(gamma, c) with ``P(u . x < 0) <= exp(-d g)`` when ``u . mu = c > 0``.

    With ``s = sqrt(1 - c^2)`` and ``R(z) = sqrt(z^2 + 1/4)``,

    .. math::

        g(\\gamma, c) = R(\\gamma) - R(\\gamma s)
            - \\tfrac12 \\log\\frac{1/2 + R(\\gamma)}{1/2 + R(\\gamma s)} ,

    which is ``(F(kappa) - F(kappa s)) / d`` for the antiderivative
    ``F(r) = sqrt(r^2 + h^2) - h log(h + sqrt(r^2 + h^2))``, ``h = d/2``, of
    the Laforgia-Natalini lower bound ``r / (h + sqrt(r^2 + h^2))`` on
    ``A_d(r)``. It depends on ``d`` only through ``gamma = kappa / d``, is
    positive for ``c > 0`` and grows like ``gamma (1 - sqrt(1 - c^2))``
    (about ``gamma c^2 / 2`` for small ``c``) for large ``gamma``. Broadcasts over ``gamma`` and ``c``.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    if np.any(~(gamma > 0.0)) or not np.all(np.isfinite(gamma)):
        raise ValueError(f"invalid gamma={gamma!r}: gamma = kappa / d must be finite and > 0")
    c = _check_cosine_positive(c)
    s = np.sqrt(np.maximum(0.0, (1.0 - c) * (1.0 + c)))
    big = np.sqrt(gamma**2 + 0.25)
    small = np.sqrt((gamma * s) ** 2 + 0.25)
    # R(gamma) - R(gamma s) = gamma^2 c^2 / (R(gamma) + R(gamma s)), without cancellation.
    difference = gamma**2 * c**2 / (big + small)
    return difference - 0.5 * np.log1p(difference / (0.5 + small))


def negative_side_bound(c, d, kappa, *, exact: bool = False) -> np.ndarray:
    """Return the book's upper bound on ``P(u . x < 0)`` for ``u . mu = c > 0``.

    Parameters
    ----------
    c : array_like
        Cosines in (0, 1].
    d : int
        Dimension, ``d >= 3``.
    kappa : float
        Concentration > 0.
    exact : bool, optional
        ``False`` (default): the closed form ``exp(-d g(kappa/d, c))`` of
        :func:`tail_exponent`. ``True``: the Chernoff bound itself,
        ``C_d(kappa) / C_d(kappa sqrt(1 - c^2))``, with the normalisers of
        :func:`noisypo.vmf.log_normalizer` (tighter).

    Notes
    -----
    Markov's inequality applied to ``exp(-lambda u . x)`` and the vMF moment
    generating function ``E[exp(a . x)] = C_d(kappa) / C_d(|kappa mu + a|)``
    give ``P(u . x < 0) <= C_d(kappa) / C_d(|kappa mu - lambda u|)``; the
    choice ``lambda = kappa c`` minimises ``|kappa mu - lambda u|`` to
    ``kappa sqrt(1 - c^2)``.
    """
    d_checked, kappa, _ = _check_setting(d, kappa, math.pi)
    c = _check_cosine_positive(c)
    if not exact:
        return np.exp(-d_checked * tail_exponent(kappa / d_checked, c))
    from noisypo import vmf

    s = np.sqrt(np.maximum(0.0, (1.0 - c) * (1.0 + c)))
    log_at_kappa = float(np.asarray(vmf.log_normalizer(d_checked, kappa)))
    # C_d(0) = 1 / |S^{d-1}| is the uniform density, the limit at kappa s = 0.
    log_uniform = -(math.log(2.0) + 0.5 * d_checked * math.log(math.pi) - special.gammaln(0.5 * d_checked))
    positive = s > 0.0
    log_at_s = np.full_like(s, log_uniform)
    if np.any(positive):
        log_at_s[positive] = np.asarray(vmf.log_normalizer(d_checked, kappa * s[positive]), dtype=np.float64)
    return np.minimum(1.0, np.exp(log_at_kappa - log_at_s))


def cone_risk_bound(angle, d, kappa, phi, *, exact: bool = False) -> np.ndarray:
    """Return the bound on the risk of any boundary within ``angle`` of the Bayes one.

    For a unit normal ``u`` with ``angle(u, u*) <= psi < phi / 2`` both
    cosines ``u . mu_+`` and ``-u . mu_-`` are at least ``sin(phi/2 - psi)``,
    so the risk at prior 1/2 is at most
    ``negative_side_bound(sin(phi/2 - psi), d, kappa)``. Where
    ``psi >= phi / 2`` the bound is vacuous and the value is 1.
    """
    d, kappa, phi = _check_setting(d, kappa, phi)
    angle = np.asarray(angle, dtype=np.float64)
    if np.any(~(angle >= 0.0)):
        raise ValueError(f"invalid angle={angle!r}: expected radians >= 0")
    useful = angle < 0.5 * phi
    c = np.where(useful, np.sin(0.5 * phi - np.where(useful, angle, 0.0)), 1.0)
    return np.where(useful, negative_side_bound(c, d, kappa, exact=exact), 1.0)


def worst_cone_risk(angle, d, kappa, phi, *, points: int = 257) -> np.ndarray:
    """Return the largest exact risk among boundaries at ``angle`` from the Bayes one.

    A unit normal at angle ``psi`` from ``u*`` has cosines
    ``c_+ = sin(phi/2) cos(psi) + cos(phi/2) sin(psi) q`` and
    ``c_- = sin(phi/2) cos(psi) - cos(phi/2) sin(psi) q`` with
    ``q`` in [-1, 1]. The risk ``(P(c_+) + P(c_-)) / 2`` is maximised over a
    grid of ``points`` values of ``q`` in [0, 1] (the risk is even in ``q``)
    with :func:`noisypo.risk.negative_side_probability`. This is the exact
    quantity that :func:`cone_risk_bound` bounds from above.
    """
    from noisypo import risk

    d, kappa, phi = _check_setting(d, kappa, phi)
    angle = np.asarray(angle, dtype=np.float64)
    q = np.linspace(0.0, 1.0, int(points))  # (q,)
    base = math.sin(0.5 * phi) * np.cos(angle)[..., None]  # (..., 1)
    spread = math.cos(0.5 * phi) * np.sin(angle)[..., None] * q  # (..., q)
    plus = np.clip(base + spread, -1.0, 1.0)
    minus = np.clip(base - spread, -1.0, 1.0)
    value = 0.5 * (
        risk.negative_side_probability(plus, d, kappa) + risk.negative_side_probability(minus, d, kappa)
    )
    return value.max(axis=-1)


def angle_for_risk(target, d, kappa, phi, *, exact: bool = False) -> float:
    """Return the largest angle ``psi`` with ``cone_risk_bound(psi) <= target``.

    Returns 0 when even the Bayes direction misses the target, in which
    case no sample size reaches it with this bound.
    """
    d, kappa, phi = _check_setting(d, kappa, phi)
    target = float(_check_probability("target", target))

    def excess(psi: float) -> float:
        return float(np.log(cone_risk_bound(psi, d, kappa, phi, exact=exact)) - math.log(target))

    if excess(0.0) > 0.0:
        return 0.0
    return float(optimize.brentq(excess, 0.0, 0.5 * phi * (1.0 - 1e-12), xtol=1e-14))


# --------------------------------------------------------------------------
# Step 2: how far training moves the boundary
# --------------------------------------------------------------------------


def motion_angle_bound(t, loss, *, beta, tau=1.0, m_norm_lower=None) -> np.ndarray:
    """Return the bound on the angle between ``Delta(t)`` and ``m`` for a loss.

    DPO and IPO use :func:`noisypo.bounds_motion.angle_bound` with
    ``lambda_max = 1`` (valid for unit embeddings); DPO also uses the
    linear-growth ratio when ``m_norm_lower`` (a lower bound on ``|m|``) is
    given. SLiC's boundary is exactly ``m`` up to the first time a margin
    reaches 1, which is at least ``tau / (2 beta^2)`` because ``|m| <= 1``;
    after that the bound is vacuous (value ``pi``).
    """
    from noisypo import bounds_motion

    name = str(getattr(loss, "name", loss)).lower()
    constants = bounds_motion.loss_constants(name)
    t = np.asarray(t, dtype=np.float64)
    if constants.curvature_bound is None:
        crossing = bounds_motion.hinge_crossing_time_lower_bound(1.0, beta=beta, tau=tau)
        return np.where(t <= crossing, 0.0, np.pi)
    extra = {}
    if m_norm_lower is not None and constants.derivative_bound is not None:
        m_norm = np.asarray(m_norm_lower, dtype=np.float64)
        if np.all(m_norm > 0.0):
            extra = dict(
                m_norm=m_norm,
                slope_at_zero=constants.slope_at_zero,
                derivative_bound=constants.derivative_bound,
            )
    return np.asarray(
        bounds_motion.angle_bound(
            t, beta=beta, tau=tau, curvature_bound=constants.curvature_bound, lambda_max=1.0, **extra
        ),
        dtype=np.float64,
    )


# --------------------------------------------------------------------------
# The theorem
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GuaranteeBound:
    """The pieces of the book's generalization bound, broadcast over the inputs.

    Every field holds on one event of probability at least ``1 - delta``.
    """

    cosine: np.ndarray  # lower bound on cos(m, mu_+ - mu_-); -1 where it is vacuous
    initial_angle: np.ndarray  # theta_0 = arccos(cosine), radians
    motion_angle: np.ndarray  # theta_1(t), radians; pi where it is vacuous
    angle: np.ndarray  # psi = theta_0 + theta_1, radians
    risk: np.ndarray  # bound on the population risk of Delta(t); 1 where it is vacuous


def _assemble(cosine, radial, t, loss, beta, tau, d, kappa, phi, exact) -> GuaranteeBound:
    initial = np.where(cosine > 0.0, np.arccos(np.clip(cosine, -1.0, 1.0)), 0.5 * np.pi)
    motion = motion_angle_bound(t, loss, beta=beta, tau=tau, m_norm_lower=np.maximum(radial, 1e-300))
    angle = initial + motion
    risk_bound = cone_risk_bound(angle, d, kappa, phi, exact=exact)
    risk_bound = np.where(cosine > 0.0, risk_bound, 1.0)
    return GuaranteeBound(cosine, initial, motion, angle, risk_bound)


def generalization_bound(
    n, epsilon, d, kappa, phi, delta, *, t, loss, beta, tau=1.0, exact: bool = False
) -> GuaranteeBound:
    """Return the book's Theorem 3.3 bound on the risk after training under flips.

    Parameters
    ----------
    n : array_like
        Samples per class (``N = 2n``).
    epsilon : array_like
        Flip rate in [0, 1/2). For a rate above 1/2 apply the bound to the
        flipped labels (rate ``1 - epsilon``): training then ends on the
        negated boundary, whose risk is one minus the bounded risk.
    d, kappa, phi
        Dimension (>= 3), concentration (``gamma = kappa / d``) and angle
        between the class means.
    delta : float
        Failure probability in (0, 1).
    t : array_like
        Training time of gradient flow ``tau dW/dt = -grad L`` (gradient
        descent with learning rate ``lr`` for ``k`` steps is its Euler
        scheme at ``t = k lr tau``).
    loss : str
        ``"dpo"``, ``"ipo"`` or ``"slic"``.
    beta, tau : float
        Temperature and inverse learning rate.
    exact : bool
        Use the exact ``A_d``, tangential variance and Chernoff bound
        (needs :mod:`noisypo.vmf`) instead of their closed-form bounds.

    Returns
    -------
    GuaranteeBound
        With probability at least ``1 - delta`` over the data set and the
        flips, the population risk of ``Delta(t)`` is at most ``.risk``.
    """

    d, kappa, phi = _check_setting(d, kappa, phi)
    delta = float(_check_probability("delta", delta))
    n = np.asarray(n, dtype=np.float64)
    epsilon = np.asarray(epsilon, dtype=np.float64)
    cosine = bounds_b2.cosine_lower_bound(n, epsilon, d, kappa, phi, delta, exact_moments=exact)
    resultant = _resultant(d, kappa, exact)
    # On the event of Lemma B.2, |m| >= m . u* >= radial (Hoeffding on the radial part).
    radial = (1.0 - 2.0 * epsilon) * resultant * math.sin(0.5 * phi) - np.sqrt(
        2.0 * math.log(2.0 / delta) / (2.0 * n)
    )
    return _assemble(cosine, radial, t, loss, beta, tau, d, kappa, phi, exact)


def _resultant(d: int, kappa: float, exact: bool) -> float:
    """A_d(kappa) itself (exact) or its Laforgia-Natalini lower bound."""
    if exact:
        from noisypo import vmf

        return float(np.asarray(vmf.mean_resultant_length(d, kappa)))

    return float(np.asarray(bounds_b2.mean_resultant_lower_bound(d, kappa)))


def _check_reachable(target, psi, t, loss, beta, tau, signal_limit) -> None:
    """Raise ValueError when no sample size can bring the bound below ``target``.

    As ``n`` grows, the initial angle tends to 0 and ``|m|`` is bounded
    below by ``signal_limit``, so the angle tends to the motion bound there.
    """
    if psi <= 0.0:
        raise ValueError(
            f"no sample size reaches risk {target:g}: even the Bayes direction's bound exceeds it; "
            "raise the target"
        )
    motion_limit = float(motion_angle_bound(t, loss, beta=beta, tau=tau, m_norm_lower=signal_limit))
    if motion_limit >= psi:
        raise ValueError(
            f"no sample size reaches risk {target:g}: the bound allows an angle of {psi:.4g} rad "
            f"but training for t={float(t):g} may move the boundary by {motion_limit:.4g} rad; "
            "lower t or beta, or raise the target"
        )


def sample_size_threshold(
    target, epsilon, d, kappa, phi, delta, *, t, loss, beta, tau=1.0, exact: bool = False
) -> int:
    """Return the smallest ``n`` per class whose bound on the risk is at most ``target``.

    The bound decreases in ``n``, so a doubling search and a bisection find
    the threshold. Raises ``ValueError`` when no ``n`` can reach the target:
    when even the Bayes direction's bound exceeds it, or when the training
    time alone moves the boundary by ``phi / 2`` or more.
    """
    d, kappa, phi = _check_setting(d, kappa, phi)
    target = float(_check_probability("target", target))
    epsilon = float(epsilon)
    if not 0.0 <= epsilon < 0.5:
        raise ValueError(f"invalid epsilon={epsilon!r}: expected a rate in [0, 1/2)")
    psi = angle_for_risk(target, d, kappa, phi, exact=exact)
    signal_limit = (1.0 - 2.0 * epsilon) * _resultant(d, kappa, exact) * math.sin(0.5 * phi)
    _check_reachable(target, psi, t, loss, beta, tau, signal_limit)

    def reaches(n: int) -> bool:
        bound = generalization_bound(n, epsilon, d, kappa, phi, delta, t=t, loss=loss, beta=beta, tau=tau, exact=exact)
        return bool(bound.risk <= target)

    return bounds_b2.smallest_sample_size(reaches)


def sample_size_closed_form(epsilon, d, kappa, phi, delta, angle) -> np.ndarray:
    """Return the ``n`` per class at which the closed-form Lemma B.2 bound reaches ``cos(angle)``.

    Solving ``a / sqrt(a^2 + b^2) >= cos(theta)`` with
    ``a = (1 - 2 epsilon) A c - r / sqrt(N)``,
    ``b = (sqrt(V) + r) / sqrt(N)`` and ``r = sqrt(2 log(2 / delta))`` gives

    .. math::

        n \\ge \\frac{\\big(r + (\\sqrt{V} + r)\\cot\\theta\\big)^2}
                     {2 (1 - 2\\epsilon)^2 A^2 c^2},

    with ``A`` the Laforgia-Natalini lower bound on ``A_d(kappa)``,
    ``c = sin(phi / 2)`` and ``V = 1 - A^2 (c^2 + (1 - 2 epsilon)^2 (1 - c^2))``.
    The factor ``1 / (1 - 2 epsilon)^2`` is the growth the theorem
    predicts; ``V`` grows from ``1 - A^2`` at ``epsilon = 0`` to
    ``1 - A^2 c^2`` at ``epsilon = 1/2``, so the numerator changes by at most
    the factor ``(1 - A^2 c^2) / (1 - A^2)``. Returned as a real number (round
    up for a sample size).
    """

    d, kappa, phi = _check_setting(d, kappa, phi)
    delta = float(_check_probability("delta", delta))
    epsilon = np.asarray(epsilon, dtype=np.float64)
    if np.any(~((epsilon >= 0.0) & (epsilon < 0.5))):
        raise ValueError(f"invalid epsilon={epsilon!r}: expected rates in [0, 1/2)")
    angle = np.asarray(angle, dtype=np.float64)
    if np.any(~((angle > 0.0) & (angle < 0.5 * math.pi))):
        raise ValueError(f"invalid angle={angle!r}: expected radians in (0, pi/2)")
    resultant = bounds_b2.mean_resultant_lower_bound(d, kappa)
    c = math.sin(0.5 * phi)
    signal = 1.0 - 2.0 * epsilon
    variance = 1.0 - resultant**2 * (c**2 + signal**2 * (1.0 - c**2))
    r = math.sqrt(2.0 * math.log(2.0 / delta))
    numerator = (r + (np.sqrt(variance) + r) / np.tan(angle)) ** 2
    return numerator / (2.0 * signal**2 * resultant**2 * c**2)


# --------------------------------------------------------------------------
# Uncertain labels (Theorem C.2)
# --------------------------------------------------------------------------


def _check_omega(omega) -> np.ndarray:
    omega = np.asarray(omega, dtype=np.float64)
    if np.any(~(omega > 0.0)) or np.any(np.isnan(omega)):
        raise ValueError(f"invalid omega={omega!r}: the uncertainty level must be > 0")
    return omega


def _tangential_nodes(slope: float) -> int:
    # The integrand y tanh(slope y) has poles at distance pi / (2 slope) from
    # the real axis, so the Gauss-Jacobi rule needs about slope nodes.
    return int(min(4096, max(64, math.ceil(4.0 * slope))))


def uncertain_signal(omega, d, kappa, phi) -> np.ndarray:
    """Return ``S(omega) = E[s u* . x]``, the radial signal of uncertain labels.

    A sample of the ``+1`` class gets ``s = +1`` with probability
    ``sigmoid(r*(x) / omega)``, ``r*(x) = 2 kappa c u* . x``,
    ``c = sin(phi / 2)``, so ``E[s | x] = tanh(kappa c u* . x / omega)`` and

    .. math:: S(\\omega) = E_{x \\sim \\mathrm{vMF}(\\mu_+, \\kappa)}
              \\big[\\tanh(\\kappa c\\, u^* \\cdot x / \\omega)\\, u^* \\cdot x\\big] > 0,

    the same for the ``-1`` class by reflection. Computed exactly with
    :func:`noisypo.risk.projection_expectation`. ``omega = inf`` gives 0.
    """
    from noisypo import risk

    d, kappa, phi = _check_setting(d, kappa, phi)
    omega = _check_omega(omega)
    c = math.sin(0.5 * phi)
    values = np.empty(omega.shape, dtype=np.float64)
    for index, level in np.ndenumerate(omega):
        if math.isinf(level):
            values[index] = 0.0
            continue
        slope = kappa * c / level

        def weighted(y, slope=slope):
            return np.tanh(slope * y) * y

        values[index] = float(
            risk.projection_expectation(weighted, c, d, kappa, tangential_nodes=_tangential_nodes(slope))
        )
    return values


def _projection_second_moment(d: int, kappa: float, phi: float) -> float:
    from noisypo import risk

    return float(risk.projection_expectation(np.square, math.sin(0.5 * phi), d, kappa))


def uncertain_cosine_lower_bound(n, omega, d, kappa, phi, delta) -> tuple[np.ndarray, np.ndarray]:
    """Return the book's Lemma B.2 bound for uncertain labels and its radial part.

    With ``r = sqrt(2 log(2 / delta))`` and ``N = 2 n``, with probability
    at least ``1 - delta``

    .. math::

        \\cos\\angle(m, \\mu_+ - \\mu_-) \\ge \\frac{a}{\\sqrt{a^2 + b^2}},\\quad
        a = S(\\omega) - \\frac{r}{\\sqrt N},\\quad
        b = \\frac{\\sqrt{1 - Q} + r}{\\sqrt N},

    where ``S`` is :func:`uncertain_signal` and
    ``Q = E[(u* . x)^2]`` under ``vMF(mu_+, kappa)``. The radial part
    ``s u* . x`` lies in [-1, 1] (Hoeffding), and the tangential part
    ``s (I - u* u*^T) x`` has per-sample second moment ``1 - Q`` because
    ``s^2 = 1`` (a vector bounded-difference inequality). Returns the
    cosine bound (-1 where ``a < 0``) and ``a``.
    """
    d, kappa, phi = _check_setting(d, kappa, phi)
    delta = float(_check_probability("delta", delta))
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1):
        raise ValueError(f"invalid n={n!r}: need at least one sample per class")
    signal = uncertain_signal(omega, d, kappa, phi)
    second = _projection_second_moment(d, kappa, phi)
    total = 2.0 * n
    deviation = math.sqrt(2.0 * math.log(2.0 / delta)) / np.sqrt(total)
    radial = signal - deviation
    tangential = math.sqrt(max(1.0 - second, 0.0)) / np.sqrt(total) + deviation
    cosine = np.where(radial >= 0.0, radial / np.sqrt(radial**2 + tangential**2), -1.0)
    return cosine, radial


def uncertain_generalization_bound(
    n, omega, d, kappa, phi, delta, *, t, loss, beta, tau=1.0, exact: bool = False
) -> GuaranteeBound:
    """Return the book's Theorem C.2 bound on the risk after training on uncertain labels.

    The same chain as :func:`generalization_bound`, with the cosine bound of
    :func:`uncertain_cosine_lower_bound` in place of Lemma B.2's.
    ``exact`` selects the Chernoff bound itself over its closed form.
    """
    d, kappa, phi = _check_setting(d, kappa, phi)
    cosine, radial = uncertain_cosine_lower_bound(n, omega, d, kappa, phi, delta)
    return _assemble(cosine, radial, t, loss, beta, tau, d, kappa, phi, exact)


def uncertain_sample_size_threshold(
    target, omega, d, kappa, phi, delta, *, t, loss, beta, tau=1.0, exact: bool = False
) -> int:
    """Return the smallest ``n`` per class whose Theorem C.2 bound is at most ``target``."""
    d, kappa, phi = _check_setting(d, kappa, phi)
    target = float(_check_probability("target", target))
    psi = angle_for_risk(target, d, kappa, phi, exact=exact)
    signal = float(uncertain_signal(omega, d, kappa, phi))
    _check_reachable(target, psi, t, loss, beta, tau, signal)
    second = _projection_second_moment(d, kappa, phi)
    r = math.sqrt(2.0 * math.log(2.0 / float(delta)))

    def reaches(n: int) -> bool:
        total = 2.0 * n
        radial = signal - r / math.sqrt(total)
        tangential = (math.sqrt(max(1.0 - second, 0.0)) + r) / math.sqrt(total)
        if radial <= 0.0:
            return False
        cosine = radial / math.hypot(radial, tangential)
        bound = _assemble(
            np.asarray(cosine), np.asarray(radial), t, loss, beta, tau, d, kappa, phi, exact
        )
        return bool(bound.risk <= target)

    return bounds_b2.smallest_sample_size(reaches)
