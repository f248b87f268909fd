"""The book's Lemma B.2: how well the labelled mean difference points at mu_+ - mu_-.

With ``n`` samples per class (``N = 2n``), ``x ~ vMF(mu_plus, kappa)`` for
the + class and ``vMF(mu_minus, kappa)`` for the - class, and labels ``s_j``
flipped independently with probability ``epsilon``, the first gradient step
of GPO moves along

.. math:: m = \\frac{1}{N}\\sum_{j=1}^{N} s_j x_j .

Write ``u = (mu_plus - mu_minus) / |mu_plus - mu_minus|`` and
``c = u . mu_plus = sin(phi / 2)``. The book proves (chapter "Lemma B.2")
that for ``epsilon < 1/2`` and ``delta`` in (0, 1), with probability at least
``1 - delta``,

.. math::

    \\cos\\angle(m, \\mu_+ - \\mu_-) \\ge
    \\frac{a}{\\sqrt{a^2 + b^2}}, \\qquad
    a = (1 - 2\\epsilon) A c - t, \\quad
    b = \\sqrt{V / N} + t, \\quad
    t = \\sqrt{2 \\log(2/\\delta) / N},

whenever ``a >= 0`` (otherwise only the trivial bound -1 holds). Here ``A``
is the mean resultant length ``A_d(kappa)`` or its lower bound
``kappa / (d/2 + sqrt(kappa^2 + d^2/4))`` (Laforgia & Natalini, 2010), and
``V`` is the per-sample tangential variance or its upper bound
``1 - A^2 (c^2 + (1 - 2 epsilon)^2 (1 - c^2))``. The constants are the
book's own: the paper's version of this lemma lost its formulas in
extraction.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "cosine_lower_bound",
    "mean_difference_cosine",
    "mean_resultant_lower_bound",
    "sample_size_for_cosine",
    "tangential_variance",
]


def mean_resultant_lower_bound(d, kappa) -> np.ndarray:
    """Return ``kappa / (d/2 + sqrt(kappa^2 + d^2/4))``, a lower bound on ``A_d(kappa)``.

    ``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` and the bound is
    ``I_nu(t) / I_{nu-1}(t) >= t / (nu + sqrt(t^2 + nu^2))`` with
    ``nu = d/2`` (Laforgia & Natalini, 2010). In terms of
    ``gamma = kappa / d`` it reads ``2 gamma / (1 + sqrt(1 + 4 gamma^2))``,
    free of ``d``. Broadcasts over ``d`` and ``kappa``.

    References
    ----------
    A. Laforgia and P. Natalini, "Some Inequalities for Modified Bessel
    Functions", Journal of Inequalities and Applications 2010, 253035.
    """
    d = np.asarray(d, dtype=np.float64)
    kappa = np.asarray(kappa, dtype=np.float64)
    if np.any(d < 2):
        raise ValueError(f"invalid dimension d={d!r}: need d >= 2")
    if np.any(kappa < 0):
        raise ValueError(f"invalid kappa={kappa!r}: the concentration must be >= 0")
    half = d / 2.0
    return kappa / (half + np.sqrt(kappa**2 + half**2))


def tangential_variance(epsilon, d, kappa, phi) -> np.ndarray:
    """Return ``V``, the variance of ``s (I - u u^T) x`` for one noisy sample (exact).

    .. math::

        V = 1 - c^2 \\mathbb{E}[w^2] - (1 - c^2)\\frac{1 - \\mathbb{E}[w^2]}{d - 1}
              - (1 - 2\\epsilon)^2 A_d(\\kappa)^2 (1 - c^2),

    with ``w = mu . x`` and ``c = sin(phi / 2)``; the same for both classes.
    Uses :func:`noisypo.vmf.w_moments` and
    :func:`noisypo.vmf.mean_resultant_length`. Broadcasts.
    """
    from noisypo import vmf

    epsilon, d, kappa, phi = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (epsilon, d, kappa, phi))
    )
    _check(epsilon, d, kappa, phi)
    c2 = np.sin(phi / 2.0) ** 2
    _, second = vmf.w_moments(d, kappa)
    resultant = vmf.mean_resultant_length(d, kappa)
    radial_second = c2 * second + (1.0 - c2) * (1.0 - second) / (d - 1.0)  # E[(u.x)^2]
    return 1.0 - radial_second - (1.0 - 2.0 * epsilon) ** 2 * resultant**2 * (1.0 - c2)


def _check(epsilon, d, kappa, phi) -> None:
    if np.any(~((epsilon >= 0) & (epsilon < 0.5))):
        raise ValueError(
            f"invalid epsilon={epsilon!r}: the bound needs 0 <= epsilon < 1/2 "
            "(for epsilon > 1/2 apply it to the flipped labels, whose rate is 1 - epsilon)"
        )
    if np.any(d < 3):
        raise ValueError(f"invalid dimension d={d!r}: need d >= 3")
    if np.any(~(kappa > 0)):
        raise ValueError(f"invalid kappa={kappa!r}: the concentration must be > 0")
    if np.any(~((phi > 0) & (phi <= math.pi))):
        raise ValueError(f"invalid phi={phi!r}: the angle between the means must be in (0, pi]")


def cosine_lower_bound(n, epsilon, d, kappa, phi, delta, *, exact_moments: bool = False) -> np.ndarray:
    """Return the book's Lemma B.2 lower bound on ``cos(m, mu_plus - mu_minus)``.

    Parameters
    ----------
    n
        Samples per class (``N = 2n`` in all), >= 1.
    epsilon
        Flip rate in [0, 1/2).
    d, kappa, phi
        Dimension, concentration and angle between the class means.
    delta
        Failure probability in (0, 1): the bound holds with probability at
        least ``1 - delta``.
    exact_moments
        ``False`` (default): the closed form with the Laforgia-Natalini
        bound for ``A`` and the variance bound
        ``V <= 1 - A^2 (c^2 + (1 - 2 epsilon)^2 (1 - c^2))``.
        ``True``: the exact ``A_d(kappa)`` and ``V`` from
        :func:`tangential_variance` (tighter, needs :mod:`noisypo.vmf`).

    Returns
    -------
    numpy.ndarray
        The bound, broadcast over all inputs; -1 where ``a < 0`` (the lemma
        then says nothing).
    """
    n, epsilon, d, kappa, phi, delta = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (n, epsilon, d, kappa, phi, delta))
    )
    _check(epsilon, d, kappa, phi)
    if np.any(n < 1):
        raise ValueError(f"invalid n={n!r}: need at least one sample per class")
    if np.any(~((delta > 0) & (delta < 1))):
        raise ValueError(f"invalid delta={delta!r}: the failure probability must be in (0, 1)")

    total = 2.0 * n
    c = np.sin(phi / 2.0)
    signal = 1.0 - 2.0 * epsilon
    if exact_moments:
        from noisypo import vmf

        resultant = np.asarray(vmf.mean_resultant_length(d, kappa), dtype=np.float64)
        variance = tangential_variance(epsilon, d, kappa, phi)
    else:
        resultant = mean_resultant_lower_bound(d, kappa)
        variance = 1.0 - resultant**2 * (c**2 + signal**2 * (1.0 - c**2))
    deviation = np.sqrt(2.0 * np.log(2.0 / delta) / total)
    radial = signal * resultant * c - deviation
    tangential = np.sqrt(np.maximum(variance, 0.0) / total) + deviation
    bound = radial / np.sqrt(radial**2 + tangential**2)
    return np.where(radial >= 0, bound, -1.0)


def sample_size_for_cosine(target, epsilon, d, kappa, phi, delta, *, exact_moments: bool = False) -> int:
    """Return the smallest ``n`` per class at which :func:`cosine_lower_bound` reaches ``target``.

    The bound increases with ``n`` and tends to 1, so any ``target < 1`` is
    reached; the search doubles ``n`` and then bisects. The sample size grows like
    ``1 / (1 - 2 epsilon)^2`` as ``epsilon`` approaches 1/2.
    """
    if not -1.0 < target < 1.0:
        raise ValueError(f"invalid target={target!r}: a cosine target must lie in (-1, 1)")

    def reaches(n: int) -> bool:
        value = cosine_lower_bound(n, epsilon, d, kappa, phi, delta, exact_moments=exact_moments)
        return bool(value >= target)

    return smallest_sample_size(reaches)


def smallest_sample_size(reaches) -> int:
    """Return the smallest ``n >= 1`` with ``reaches(n)`` true, for a monotone ``reaches``.

    Doubles ``n`` until the condition holds, then bisects.

    Raises
    ------
    RuntimeError
        If the condition still fails at 2**50 samples per class.
    """
    high = 1
    while not reaches(high):
        high *= 2
        if high > 2**50:
            raise RuntimeError("sample-size search passed 2**50 samples per class without reaching the target")
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle
    return high


def mean_difference_cosine(x: torch.Tensor, s: torch.Tensor, mu_plus: torch.Tensor, mu_minus: torch.Tensor) -> torch.Tensor:
    """Return ``cos(m, mu_plus - mu_minus)`` with ``m = mean_j s_j x_j``, batched.

    ``x`` has shape ``(..., N, d)`` and ``s`` shape ``(..., N)``; the result
    has shape ``x.shape[:-2]``.
    """
    m = (s.to(x.dtype).unsqueeze(-1) * x).mean(dim=-2)  # (..., d)
    direction = (mu_plus - mu_minus).to(x.dtype)
    direction = direction / direction.norm()
    return (m @ direction) / m.norm(dim=-1)
