"""Maximum-likelihood fit of a von Mises-Fisher distribution to unit vectors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from noisypo.vmf_special import mean_resultant_length

__all__ = ["VMFFit", "fit_vmf", "kappa_from_mean_resultant"]


@dataclass(frozen=True)
class VMFFit:
    """A fitted vMF(mu, kappa) on S^{d-1}."""

    mu: object = field(repr=False)  # unit mean direction (d,): numpy float64, or a float64 tensor for tensor input
    kappa: float  # maximum-likelihood concentration
    gamma: float  # normalised concentration kappa / d
    mean_resultant: float  # R-bar = |mean of the normalised rows|, in [0, 1]


def kappa_from_mean_resultant(d: int, r_bar: float, *, newton_steps: int = 50) -> float:
    """Solve A_d(kappa) = r_bar for kappa (the maximum-likelihood equation).

    Starts from the closed-form approximation of Banerjee et al. (2005),
    kappa_0 = r_bar (d - r_bar^2) / (1 - r_bar^2), and refines it with Newton
    steps on A_d(kappa) - r_bar, using
    A_d'(kappa) = 1 - A_d(kappa)^2 - (d - 1) A_d(kappa) / kappa (Sra, 2012),
    until the relative step is below 1e-13.

    Raises
    ------
    ValueError
        If d < 2 or r_bar is outside [0, 1).
    """
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    if not 0.0 <= r_bar < 1.0:
        raise ValueError(
            f"r_bar must lie in [0, 1), got {r_bar}; r_bar = 1 (identical rows) has kappa = inf"
        )
    if r_bar == 0.0:
        return 0.0
    kappa = r_bar * (d - r_bar * r_bar) / (1.0 - r_bar * r_bar)
    for _ in range(newton_steps):
        a = float(mean_resultant_length(d, kappa))
        slope = 1.0 - a * a - (d - 1.0) * a / kappa
        step = (a - r_bar) / slope
        # Keep kappa positive: A_d is increasing and concave, so halving
        # a step that would cross zero still moves towards the root.
        new = kappa - step if kappa - step > 0 else 0.5 * kappa
        if abs(new - kappa) <= 1e-13 * kappa:
            return new
        kappa = new
    return kappa


def fit_vmf(x) -> VMFFit:
    """Fit vMF(mu, kappa) to the rows of x by maximum likelihood.

    Each row is divided by its norm first. With m the mean of the
    normalised rows, mu = m / |m|, R-bar = |m| and kappa solves
    A_d(kappa) = R-bar (see :func:`kappa_from_mean_resultant`).

    Parameters
    ----------
    x : array_like or torch.Tensor
        Data of shape (n, d), n >= 2, d >= 2, no zero rows.

    Returns
    -------
    VMFFit
        mu is a numpy array, or a float64 tensor on x's device when x is a
        tensor; kappa, gamma = kappa / d and mean_resultant are floats.

    Raises
    ------
    ValueError
        If x is not two-dimensional, has fewer than 2 rows or columns,
        contains NaN/inf or a zero row, or all rows point the same way.
    """
    as_tensor = False
    try:
        import torch

        if isinstance(x, torch.Tensor):
            as_tensor, device = True, x.device
            x = x.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {data.shape}")
    n, d = data.shape
    if n < 2 or d < 2:
        raise ValueError(f"x needs n >= 2 rows and d >= 2 columns, got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("x contains NaN or inf")
    norms = np.linalg.norm(data, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"x has {int(np.sum(norms == 0))} zero rows, which have no direction")
    mean = (data / norms[:, None]).mean(axis=0)
    r_bar = float(np.linalg.norm(mean))
    if r_bar >= 1.0 - 1e-15:
        raise ValueError("all rows of x point the same way, so kappa is infinite")
    mu = mean / r_bar
    kappa = kappa_from_mean_resultant(d, r_bar)
    if as_tensor:
        mu = torch.from_numpy(mu).to(device)
    return VMFFit(mu=mu, kappa=kappa, gamma=kappa / d, mean_resultant=r_bar)
