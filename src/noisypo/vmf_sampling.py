"""Batched von Mises-Fisher sampling in torch (Wood, 1994) and the two-class means.

A draw x ~ vMF(mu, kappa) on S^{d-1} is built in three steps:

1. the projection w = mu . x by Wood's rejection sampler, in float64 on
   mu's device, vectorised over every pending sample;
2. a uniform direction v orthogonal to e1, from d - 1 standard normals,
   giving y = (w, sqrt(1 - w^2) v), a draw with mean direction e1;
3. the Householder reflection that maps e1 to mu, applied in O(d) per
   sample (no d x d matrix).

References
----------
.. [1] A. T. A. Wood, "Simulation of the von Mises Fisher distribution",
   Communications in Statistics - Simulation and Computation 23(1), 1994.
.. [2] G. Marsaglia and W. W. Tsang, "A simple method for generating gamma
   variables", ACM Transactions on Mathematical Software 26(3), 2000.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["sample_vmf", "sample_w", "two_class_means"]


def _standard_gamma(shape: torch.Tensor, generator, device) -> torch.Tensor:
    """Gamma(shape, 1) draws, one per entry of ``shape`` (float64), by Marsaglia-Tsang.

    ``torch.distributions.Gamma`` takes no generator, so this sampler uses only
    ``randn``/``rand`` with the caller's generator and stays reproducible.
    Shapes below 1 use Gamma(a) = Gamma(a + 1) U^(1/a).
    """
    boost = shape < 1.0
    a = torch.where(boost, shape + 1.0, shape)
    dd = a - 1.0 / 3.0
    cc = 1.0 / torch.sqrt(9.0 * dd)
    out = torch.empty_like(a)
    pending = torch.arange(a.numel(), device=device)
    while pending.numel():
        count = pending.numel()
        x = torch.randn(count, dtype=torch.float64, device=device, generator=generator)
        u = torch.rand(count, dtype=torch.float64, device=device, generator=generator)
        d_p, c_p = dd[pending], cc[pending]
        v = (1.0 + c_p * x) ** 3
        ok = v > 0
        log_v = torch.log(torch.where(ok, v, torch.ones_like(v)))
        accept = ok & (torch.log1p(-u) < 0.5 * x * x + d_p - d_p * v + d_p * log_v)
        out[pending[accept]] = (d_p * v)[accept]
        pending = pending[~accept]
    if boost.any():
        u = torch.rand(a.shape, dtype=torch.float64, device=device, generator=generator)
        # 1 - u lies in (0, 1], so the power never takes log(0).
        out = torch.where(boost, out * (1.0 - u) ** (1.0 / shape.clamp_min(1e-300)), out)
    return out


def sample_w(d: int, kappa: torch.Tensor, n: int, *, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw w = mu . x by Wood's rejection sampler (private kernel: no input checks).

    Parameters
    ----------
    d
        Dimension (>= 2).
    kappa
        float64 tensor of shape (B,) on the target device.
    n
        Draws per kappa.

    Returns
    -------
    (w, one_minus_w)
        float64 tensors of shape (B, n); 1 - w is computed without
        cancellation so that sqrt(1 - w^2) stays accurate when w is near 1.

    Notes
    -----
    With b = (d - 1) / (2 kappa + sqrt(4 kappa^2 + (d - 1)^2)) (no cancellation
    for large kappa), x0 = (1 - b) / (1 + b) and
    c = kappa x0 + (d - 1) log(1 - x0^2), a proposal
    w = (1 - (1 + b) z) / (1 - (1 - b) z) with z ~ Beta((d-1)/2, (d-1)/2) is
    accepted when kappa w + (d - 1) log(1 - x0 w) - c >= log U.
    """
    device = kappa.device
    m = d - 1.0
    k = kappa[:, None].expand(-1, n).reshape(-1)  # (B n,)
    b = m / (2.0 * k + torch.sqrt(4.0 * k * k + m * m))
    one_minus_x0 = 2.0 * b / (1.0 + b)
    x0 = (1.0 - b) / (1.0 + b)
    log_one_minus_x0_sq = torch.log(4.0 * b) - 2.0 * torch.log1p(b)
    w = torch.empty_like(k)
    omw = torch.empty_like(k)
    pending = torch.arange(k.numel(), device=device)
    half = torch.full((1,), 0.5 * m, dtype=torch.float64, device=device)
    while pending.numel():
        count = pending.numel()
        shape = half.expand(2 * count)
        g = _standard_gamma(shape, generator, device)
        z = g[:count] / (g[:count] + g[count:])
        u = torch.rand(count, dtype=torch.float64, device=device, generator=generator)
        b_p, x0_p, k_p = b[pending], x0[pending], k[pending]
        den = 1.0 - (1.0 - b_p) * z
        omw_p = 2.0 * b_p * z / den  # 1 - w, exact form
        w_p = 1.0 - omw_p
        # kappa (w - x0) + (d - 1) [log(1 - x0 w) - log(1 - x0^2)], cancellation-free.
        log_ratio = torch.log(one_minus_x0[pending] + x0_p * omw_p) - log_one_minus_x0_sq[pending]
        score = k_p * (one_minus_x0[pending] - omw_p) + m * log_ratio
        accept = score >= torch.log1p(-u)
        idx = pending[accept]
        w[idx] = w_p[accept]
        omw[idx] = omw_p[accept]
        pending = pending[~accept]
    return w.view(-1, n), omw.view(-1, n)


def _fill_standard_normal(out: torch.Tensor, generator) -> None:
    """Fill a contiguous tensor with N(0, 1) draws that the torch generator determines.

    On a CPU, torch 2.13's float64 ``normal_`` ran at about a quarter of its
    float32 speed and at half the speed of NumPy's ziggurat sampler (one
    thread, 3 million draws, on a shared 2-core x86 CPU). So float64 CPU
    tensors are filled by a NumPy generator whose seed is drawn from
    ``generator``, which keeps the draws reproducible.
    """
    if out.device.type == "cpu" and out.dtype == torch.float64:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        np.random.default_rng(seed).standard_normal(out=out.numpy())
    else:
        out.normal_(generator=generator)


def _check_mu(mu: torch.Tensor) -> None:
    if not isinstance(mu, torch.Tensor):
        raise TypeError(f"mu must be a torch.Tensor, got {type(mu).__name__}")
    if not mu.is_floating_point():
        raise TypeError(f"mu must have a floating dtype, got {mu.dtype}")
    if mu.ndim < 1 or mu.shape[-1] < 2:
        raise ValueError(f"mu must have shape (..., d) with d >= 2, got {tuple(mu.shape)}")
    if not torch.isfinite(mu).all():
        raise ValueError("mu contains NaN or inf")
    norms = torch.linalg.vector_norm(mu.double(), dim=-1)
    tol = math.sqrt(torch.finfo(mu.dtype).eps)
    worst = (norms - 1.0).abs().max().item() if norms.numel() else 0.0
    if worst > tol:
        raise ValueError(
            f"mu rows must have unit norm: the largest | |mu| - 1 | is {worst:.3g} "
            f"(tolerance {tol:.1g} for {mu.dtype}); divide mu by its norm first"
        )


def _check_kappa(kappa, batch_shape: torch.Size, device) -> torch.Tensor:
    kappa_t = torch.as_tensor(kappa, dtype=torch.float64, device=device)
    if torch.isnan(kappa_t).any():
        raise ValueError("kappa contains NaN")
    if (kappa_t < 0).any():
        raise ValueError(f"kappa must be >= 0, got min {kappa_t.min().item():.6g}")
    if torch.isinf(kappa_t).any():
        raise ValueError("kappa must be finite, got inf")
    try:
        return torch.broadcast_to(kappa_t, batch_shape)
    except RuntimeError as error:
        raise ValueError(
            f"kappa of shape {tuple(kappa_t.shape)} does not broadcast to mu.shape[:-1] = "
            f"{tuple(batch_shape)}"
        ) from error


def sample_vmf(mu: torch.Tensor, kappa, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n samples from vMF(mu, kappa) on S^{d-1} for every mean direction in a batch.

    The density is :math:`C_d(\\kappa)\\exp(\\kappa\\mu^\\top x)` on the unit sphere
    (see :func:`noisypo.vmf.log_normalizer`). The projection w = mu . x comes
    from Wood's (1994) rejection sampler in float64; the tangential part is a
    uniform direction orthogonal to mu; the rotation e1 -> mu is a Householder
    reflection applied in O(d) per sample (identity when mu = e1).

    Parameters
    ----------
    mu : torch.Tensor
        Mean directions of shape (..., d), d >= 2, unit rows (within
        sqrt(machine epsilon) of the dtype). Floating dtype; the output has
        mu's dtype and device.
    kappa : float or torch.Tensor
        Concentration(s) >= 0, broadcastable to ``mu.shape[:-1]``.
        kappa = 0 gives the uniform distribution.
    n : int
        Samples per mean direction (>= 0).
    generator : torch.Generator, optional
        Source of randomness on mu's device, for reproducible draws.

    Returns
    -------
    torch.Tensor
        Samples of shape (..., n, d).

    Raises
    ------
    TypeError
        If mu is not a floating tensor or n is not an int.
    ValueError
        If d < 2, a row of mu is not of unit norm (the message gives the
        largest deviation), kappa is negative, NaN, inf or of a shape that
        does not broadcast, or n < 0.

    Examples
    --------
    >>> import torch
    >>> mu = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    >>> x = sample_vmf(mu, torch.tensor([10.0, 0.0]), 5, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape)
    (2, 5, 3)
    """
    _check_mu(mu)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    batch_shape, d = mu.shape[:-1], mu.shape[-1]
    kappa_b = _check_kappa(kappa, batch_shape, mu.device)
    dtype, device = mu.dtype, mu.device
    if n == 0 or mu.numel() == 0:
        return torch.empty(*batch_shape, n, d, dtype=dtype, device=device)

    mu64 = mu.reshape(-1, d).double()  # (B, d)
    mu64 = mu64 / torch.linalg.vector_norm(mu64, dim=-1, keepdim=True)
    k = kappa_b.reshape(-1).contiguous()  # (B,)
    w, omw = sample_w(d, k, n, generator=generator)  # (B, n) float64
    radius = torch.sqrt(omw * (2.0 - omw))  # sqrt(1 - w^2), (B, n)

    # Householder vector u with H e1 = mu: u = e1 - mu, where u_1 = 1 - mu_1 is
    # written as |mu_rest|^2 / (1 + mu_1) when mu_1 > 0 to avoid cancellation.
    mu1, rest = mu64[:, 0], mu64[:, 1:]
    rest_sq = (rest * rest).sum(-1)
    u1 = torch.where(mu1 > 0, rest_sq / (1.0 + mu1.clamp_min(0.0)), 1.0 - mu1)  # (B,)
    u_sq = u1 * u1 + rest_sq
    beta = torch.where(u_sq > 0, 2.0 / torch.where(u_sq > 0, u_sq, 1.0), 0.0)  # 0: H = I
    u_rest = (-rest).to(dtype)  # (B, d-1)

    out = torch.empty(mu64.shape[0], n, d, dtype=dtype, device=device)  # (B, n, d)
    # Filling the whole contiguous tensor is several times faster than filling
    # the strided view out[:, :, 1:]; column 0 is overwritten below.
    _fill_standard_normal(out, generator)
    tangent = out[:, :, 1:]  # (B, n, d-1) standard normals
    v_norm = torch.linalg.vector_norm(tangent, dim=-1).double()  # (B, n)
    v_dot_u = torch.bmm(tangent, u_rest[:, :, None]).squeeze(-1).double()  # (B, n)
    scale = radius / v_norm  # y_rest = scale * v
    # H y = y - beta (u . y) u with u . y = u1 w + scale (u_rest . v).
    coef = beta[:, None] * (u1[:, None] * w + scale * v_dot_u)  # (B, n)
    out[:, :, 0] = (w - coef * u1[:, None]).to(dtype)
    tangent.mul_(scale.to(dtype)[:, :, None])
    tangent.addcmul_((-coef).to(dtype)[:, :, None], u_rest[:, None, :])
    return out.view(*batch_shape, n, d)


def two_class_means(d: int, phi: float, *, dtype: torch.dtype = torch.float64, device=None):
    """Return unit means mu_+ and mu_- at angle phi: cos(phi/2) e1 +- sin(phi/2) e2.

    Parameters
    ----------
    d : int
        Dimension, d >= 2.
    phi : float
        Angle between the two means in radians, 0 <= phi <= pi.
    dtype, device
        Of the returned tensors.

    Returns
    -------
    (mu_plus, mu_minus)
        Tensors of shape (d,).

    Raises
    ------
    ValueError
        If d < 2 or phi is outside [0, pi].
    """
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"d must be an int, got {type(d).__name__}")
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    phi = float(phi)
    if not 0.0 <= phi <= math.pi:
        raise ValueError(f"phi must lie in [0, pi], got {phi}")
    mu_plus = torch.zeros(d, dtype=dtype, device=device)
    mu_minus = torch.zeros(d, dtype=dtype, device=device)
    c, s = math.cos(phi / 2.0), math.sin(phi / 2.0)
    mu_plus[0], mu_plus[1] = c, s
    mu_minus[0], mu_minus[1] = c, -s
    return mu_plus, mu_minus
