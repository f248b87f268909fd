"""Reward dynamics of GPO training in the last-layer model.

The model is the softmax policy :math:`\\pi_W(y \\mid x) = \\mathrm{softmax}(W x)_y`
on unit embeddings :math:`x \\in \\mathbb{R}^d`, with unembedding
:math:`W \\in \\mathbb{R}^{V \\times d}` and reference policy :math:`W(0) = W_{\\mathrm{ref}}`.
The preferred and rejected answers are the tokens ``a`` and ``b``, and a
pair carries the label :math:`s = +1` when ``a`` wins and :math:`s = -1`
when ``b`` wins. The softmax normaliser cancels in the log-ratio difference,
so with :math:`\\Delta = (w_a - w_b) - (w_a - w_b)_{\\mathrm{ref}}`

.. math::

    h_i = s_i \\, \\Delta \\cdot x_i, \\qquad r_i = \\beta h_i .

Gradient flow :math:`\\tau \\dot W = -\\nabla L` on the GPO loss
:math:`L = \\frac1N \\sum_i f(r_i)` moves only the rows ``a`` and ``b``, in
opposite directions, and gives (Lemma B.1 of Im & Li, 2025)

.. math::

    \\tau \\dot\\Delta = -\\frac{2\\beta}{N} \\sum_j f'(r_j) s_j x_j, \\qquad
    \\tau \\dot r_i = -\\frac{2\\beta^2}{N} \\sum_j f'(r_j) s_i s_j \\langle x_i, x_j \\rangle .

For IPO, :math:`f'(z) = 2(z - 1)` and the flow is linear,
:math:`\\tau \\dot\\Delta = -4\\beta^2 S \\Delta + 4\\beta m` with
:math:`S = \\frac1N \\sum_j x_j x_j^\\top` and :math:`m = \\frac1N \\sum_j s_j x_j`.

Gradient descent with learning rate ``lr`` is the explicit Euler scheme of
this flow with time step ``lr * tau``: after ``k`` steps it approximates the
flow at time ``t = k * lr * tau``.

References
----------
M. Im and Y. Li, "How Well Can Preference Optimization Generalize Under
Noisy Feedback?", arXiv:2510.01458, 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from noisypo.losses import GPOLoss, get_loss

__all__ = [
    "GDResult",
    "IPOSolution",
    "MarginODESolution",
    "gpo_objective",
    "gradient_descent",
    "ipo_closed_form",
    "log_policy",
    "log_ratio_margin",
    "margins",
    "row_gradient",
    "second_moments",
    "solve_margin_ode",
]


# --- Validation helpers ----------------------------------------------------


def _check_positive(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number > 0")
    return number


def _check_beta_tensor(beta: float | Tensor, like: Tensor) -> Tensor:
    """Return beta as a tensor of ``like``'s dtype, checked finite and > 0."""
    if isinstance(beta, Tensor):
        value = beta.to(dtype=like.dtype, device=like.device)
        if not bool(torch.isfinite(value).all()) or not bool((value > 0).all()):
            raise ValueError("invalid beta: every entry must be finite and > 0")
        return value
    return torch.tensor(_check_positive("beta", beta), dtype=like.dtype, device=like.device)


def _check_finite(name: str, tensor: Tensor) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite entries; clean the input first")


def _check_labels(s: Tensor) -> None:
    if not bool(((s == 1) | (s == -1)).all()):
        raise ValueError("labels s must be +1 or -1 (s = +1 when answer a is preferred)")


def _as_float_tensor(name: str, value: Tensor | np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
    tensor = torch.as_tensor(value)
    if not (tensor.is_floating_point() or dtype is not None):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor.to(dtype) if dtype is not None else tensor


def _check_shapes(x: Tensor, s: Tensor, delta: Tensor | None = None) -> None:
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., N, d), got {tuple(x.shape)}")
    if s.ndim < 1 or s.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"shape mismatch: s has shape {tuple(s.shape)} but x has shape {tuple(x.shape)}; "
            "expected s (..., N) with N = x.shape[-2]"
        )
    if delta is not None and (delta.ndim < 1 or delta.shape[-1] != x.shape[-1]):
        raise ValueError(
            f"shape mismatch: delta has shape {tuple(delta.shape)} but x has shape {tuple(x.shape)}; "
            "expected delta (..., d) with d = x.shape[-1]"
        )


def _batch_shape(**shapes: tuple[int, ...]) -> torch.Size:
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        listed = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"shape mismatch: the batch dimensions do not broadcast ({listed})") from None


# --- The model and the margin ----------------------------------------------


def log_policy(weight: Tensor, x: Tensor) -> Tensor:
    """Return the log-probabilities ``log softmax(W x)`` of the last-layer policy.

    Parameters
    ----------
    weight
        Unembedding ``W`` of shape (..., V, d).
    x
        Embeddings of shape (..., N, d).

    Returns
    -------
    Tensor
        ``log pi_W(y | x_i)`` of shape (..., N, V).
    """
    if weight.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"shape mismatch: weight has shape {tuple(weight.shape)} and x has shape {tuple(x.shape)}; "
            "their last dimensions (d) must agree"
        )
    logits = x @ weight.transpose(-1, -2)  # (..., N, V)
    return torch.log_softmax(logits, dim=-1)


def log_ratio_margin(
    weight: Tensor, weight_ref: Tensor, x: Tensor, s: Tensor, *, a: int = 0, b: int = 1
) -> Tensor:
    """Return the log-ratio difference ``h_i`` from full softmax policies.

    ``h_i = log pi_W(y_w|x_i)/pi_ref(y_w|x_i) - log pi_W(y_l|x_i)/pi_ref(y_l|x_i)``
    with ``y_w = a`` when ``s_i = +1`` and ``y_w = b`` when ``s_i = -1``.
    It equals ``s_i * Delta . x_i`` (see :func:`margins`) because the softmax
    normaliser cancels; this function computes it the long way, through the
    normalised log-probabilities, as a check of that identity.

    Parameters
    ----------
    weight, weight_ref
        Unembeddings of shape (..., V, d).
    x
        Embeddings of shape (..., N, d).
    s
        Labels of shape (..., N), +1 or -1.
    a, b
        Token indices of the two answers.
    """
    logp = log_policy(weight, x) - log_policy(weight_ref, x)  # (..., N, V)
    difference = logp[..., a] - logp[..., b]  # (..., N)
    return s.to(difference.dtype) * difference


def margins(delta: Tensor, x: Tensor, s: Tensor, beta: float | Tensor) -> Tensor:
    """Return the reward margins ``r_i = beta * s_i * (Delta . x_i)``.

    Parameters
    ----------
    delta
        ``Delta = (w_a - w_b) - (w_a - w_b)_ref``, shape (..., d).
    x
        Embeddings, shape (..., N, d).
    s
        Labels in {+1, -1}, shape (..., N).
    beta
        Temperature > 0 (a float, or a tensor broadcastable to the batch shape).

    Returns
    -------
    Tensor
        Margins of shape (..., N), leading dimensions broadcast.

    Raises
    ------
    ValueError
        On a shape mismatch, a non-positive beta or non-finite input.
    """
    _check_shapes(x, s, delta)
    _check_finite("x", x)
    _check_finite("delta", delta)
    _check_labels(s)
    beta_t = _check_beta_tensor(beta, x)
    _batch_shape(delta=delta.shape[:-1], x=x.shape[:-2], s=s.shape[:-1], beta=beta_t.shape)
    return _margins(delta.to(x.dtype), x, s.to(x.dtype), beta_t)


def _margins(delta: Tensor, x: Tensor, s: Tensor, beta: Tensor) -> Tensor:
    # No validation: private kernel. delta (..., d), x (..., N, d), s (..., N),
    # beta () or (...); returns (..., N) with the leading dimensions broadcast.
    return _chunked(_margin_kernel, (delta, x, s, beta), (1, 2, 1, 0), (x.shape[-2],), x.shape[-2] * x.shape[-1])


def _margin_kernel(delta: Tensor, x: Tensor, s: Tensor, beta: Tensor) -> Tensor:
    # A product and a sum, not a matmul: BLAS picks its summation order by
    # matrix shape, and this keeps a batched run bit-identical to one problem.
    projection = (x * delta.unsqueeze(-2)).sum(dim=-1)  # (..., N)
    return beta.unsqueeze(-1) * s * projection


# Elements of the (chunk, N, d) product that one kernel call forms: about
# 4 MB in float32, so the temporaries stay in cache.
_CHUNK_ELEMENTS = 1 << 20


def _chunked(kernel, operands, core_ndims, out_core_shape, work_per_problem):
    """Apply ``kernel`` to chunks of the broadcast batch and assemble the result.

    Each operand has ``core_ndims[k]`` trailing core dimensions; the leading
    ones broadcast to a common batch shape. The chunks are views, so the
    broadcast inputs are never copied, and because every problem is computed
    by the same elementwise code, the result does not depend on the chunking.
    """
    batch = torch.broadcast_shapes(*(op.shape[: op.ndim - k] for op, k in zip(operands, core_ndims)))
    expanded = [op.expand(batch + op.shape[op.ndim - k :]) for op, k in zip(operands, core_ndims)]
    reference = operands[1]
    out = torch.empty(batch + tuple(out_core_shape), dtype=reference.dtype, device=reference.device)
    _fill_chunks(kernel, expanded, out, len(batch), work_per_problem)
    return out


def _fill_chunks(kernel, operands, out, batch_ndim, work_per_problem):
    problems = math.prod(out.shape[:batch_ndim])
    if batch_ndim == 0 or problems * work_per_problem <= _CHUNK_ELEMENTS:
        out.copy_(kernel(*operands))
        return
    per_slice = problems // out.shape[0]  # problems in one index of the first batch dimension
    if per_slice * work_per_problem > _CHUNK_ELEMENTS:
        for index in range(out.shape[0]):
            _fill_chunks(kernel, [op[index] for op in operands], out[index], batch_ndim - 1, work_per_problem)
        return
    size = max(1, _CHUNK_ELEMENTS // (per_slice * work_per_problem))
    for start in range(0, out.shape[0], size):
        part = slice(start, start + size)
        out[part].copy_(kernel(*[op[part] for op in operands]))


def gpo_objective(delta: Tensor, x: Tensor, s: Tensor, loss: str | GPOLoss, beta: float | Tensor) -> Tensor:
    """Return the GPO loss ``L = mean_i f(r_i)`` for each problem, shape (...)."""
    spec = get_loss(loss)
    return spec.f(margins(delta, x, s, beta)).mean(dim=-1)


def row_gradient(delta: Tensor, x: Tensor, s: Tensor, loss: str | GPOLoss, beta: float | Tensor) -> Tensor:
    """Return the gradient of the GPO loss with respect to the row ``w_a``.

    ``dL/dw_a = (beta / N) sum_i f'(r_i) s_i x_i`` and ``dL/dw_b = -dL/dw_a``;
    every other row of ``W`` has zero gradient. Shape (..., d).
    """
    spec = get_loss(loss)
    _check_shapes(x, s, delta)
    _check_finite("x", x)
    _check_finite("delta", delta)
    _check_labels(s)
    beta_t = _check_beta_tensor(beta, x)
    _batch_shape(delta=delta.shape[:-1], x=x.shape[:-2], s=s.shape[:-1], beta=beta_t.shape)
    return _row_gradient(delta.to(x.dtype), x, s.to(x.dtype), beta_t, (spec,))


def _row_gradient(delta: Tensor, x: Tensor, s: Tensor, beta: Tensor, specs: tuple[GPOLoss, ...]) -> Tensor:
    # No validation: private kernel. With one loss, delta (..., d); with L
    # losses, delta (L, ..., d) and x, s, beta broadcast against delta[l].
    if len(specs) > 1:
        return torch.stack([_row_gradient(delta[index], x, s, beta, (spec,)) for index, spec in enumerate(specs)])
    spec = specs[0]

    def kernel(delta_: Tensor, x_: Tensor, s_: Tensor, beta_: Tensor) -> Tensor:
        weights = spec.f_prime(_margin_kernel(delta_, x_, s_, beta_)) * s_  # f'(r_i) s_i, (..., N)
        total = (weights.unsqueeze(-1) * x_).sum(dim=-2)  # sum_i f'(r_i) s_i x_i, (..., d)
        return beta_.unsqueeze(-1) * total / x_.shape[-2]

    return _chunked(kernel, (delta, x, s, beta), (1, 2, 1, 0), (x.shape[-1],), x.shape[-2] * x.shape[-1])


# --- Gradient descent --------------------------------------------------------


@dataclass(frozen=True)
class GDResult:
    """Result of :func:`gradient_descent`.

    Attributes
    ----------
    delta
        Final ``Delta = (w_a - w_b) - (w_a - w_b)_ref``, shape (..., d), or
        (L, ..., d) when several losses were trained at once.
    trajectory
        ``Delta`` at the recorded steps, shape (..., T, d) (or (L, ..., T, d)),
        or ``None`` when ``record_every`` was not given.
    record_steps
        The step numbers of the trajectory entries, shape (T,), or ``None``.
    """

    delta: Tensor
    trajectory: Tensor | None = None
    record_steps: Tensor | None = None


def gradient_descent(
    x: Tensor,
    s: Tensor,
    loss: str | GPOLoss | Sequence[str | GPOLoss],
    *,
    beta: float | Tensor,
    lr: float,
    steps: int,
    delta0: Tensor | None = None,
    record_every: int | None = None,
) -> GDResult:
    """Run full-batch gradient descent on the GPO loss in the last-layer model.

    Many independent problems train at once: every leading dimension of
    ``x`` and ``s`` is a batch dimension (trials, noise levels, ...), and a
    sequence of losses adds one more leading dimension in front.

    The update on the unembedding ``W`` is ``W <- W - lr * dL/dW``. Only rows
    ``a`` and ``b`` have a gradient, ``dL/dw_a = -dL/dw_b = g`` with

    .. math::

        g = \\frac{\\beta}{N} \\sum_i f'(r_i) s_i x_i ,

    so ``Delta = (w_a - w_b) - ref`` moves by twice the per-row step:

    .. math::

        \\Delta_{k+1} = \\Delta_k - 2\\,\\mathrm{lr}\\, g(\\Delta_k).

    This is the explicit Euler scheme, with time step ``lr * tau``, of the
    gradient flow ``tau dW/dt = -dL/dW`` (see :func:`solve_margin_ode`).

    Parameters
    ----------
    x
        Embeddings of shape (..., N, d), floating point.
    s
        Labels in {+1, -1} of shape (..., N); broadcast with ``x.shape[:-2]``.
    loss
        A loss name, a :class:`~noisypo.losses.GPOLoss`, or a sequence of
        them (adds a leading loss dimension of that length to the result).
    beta
        Temperature > 0: a float or a tensor broadcastable to the batch shape.
    lr
        Learning rate > 0.
    steps
        Number of steps >= 0.
    delta0
        Initial ``Delta``, broadcastable to (..., d); default zero (the
        policy starts at the reference).
    record_every
        Record ``Delta`` every this many steps (steps 0, k, 2k, ... and the
        last step); default: no trajectory.

    Returns
    -------
    GDResult
        The final ``Delta`` and, if requested, the trajectory.

    Notes
    -----
    The dot products are formed as products and sums rather than a matmul,
    over chunks of about 2**20 elements of the (..., N, d) product. So the
    memory of a step stays small and no broadcast input is copied. With IPO
    and SLiC (plain arithmetic) a batched run is bit-identical to running
    each problem alone. DPO's ``f'`` uses ``torch.sigmoid``, whose CPU
    kernel can round a value differently in the last bit depending on where
    it sits in memory, so batched and single DPO runs agree only to rounding.

    Raises
    ------
    ValueError
        On unknown losses, a non-positive ``beta`` or ``lr``, negative
        ``steps``, mismatched shapes, labels other than +1/-1, or NaN/inf
        in the input.

    Examples
    --------
    Ten problems of 8 pairs in 3 dimensions, trained with DPO and IPO at once:

    >>> import torch
    >>> x = torch.nn.functional.normalize(torch.randn(10, 8, 3), dim=-1)
    >>> s = torch.ones(10, 8)
    >>> result = gradient_descent(x, s, ["dpo", "ipo"], beta=0.5, lr=0.1, steps=20, record_every=5)
    >>> result.delta.shape, result.trajectory.shape
    (torch.Size([2, 10, 3]), torch.Size([2, 10, 5, 3]))
    """
    x = _as_float_tensor("x", x)
    s = torch.as_tensor(s, device=x.device)
    _check_shapes(x, s, delta0)
    _check_finite("x", x)
    _check_labels(s)
    s = s.to(x.dtype)
    beta_t = _check_beta_tensor(beta, x)
    lr = _check_positive("lr", lr)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"invalid steps={steps!r}: expected an int >= 0")
    if record_every is not None and (
        isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1
    ):
        raise ValueError(f"invalid record_every={record_every!r}: expected None or an int >= 1")

    if isinstance(loss, (str, GPOLoss)):
        specs: tuple[GPOLoss, ...] = (get_loss(loss),)
        several = False
    else:
        specs = tuple(get_loss(item) for item in loss)
        if not specs:
            raise ValueError("loss sequence is empty: give at least one loss")
        several = True

    batch_shape = _batch_shape(x=x.shape[:-2], s=s.shape[:-1], beta=beta_t.shape)
    shape = (len(specs),) * several + batch_shape + (x.shape[-1],)
    if delta0 is None:
        delta = torch.zeros(shape, dtype=x.dtype, device=x.device)
    else:
        delta0 = torch.as_tensor(delta0, device=x.device).to(x.dtype)
        _check_finite("delta0", delta0)
        try:
            delta = delta0.expand(shape).clone()
        except RuntimeError:
            raise ValueError(
                f"shape mismatch: delta0 has shape {tuple(delta0.shape)}, not broadcastable to {tuple(shape)}"
            ) from None

    records: list[Tensor] = []
    record_steps: list[int] = []
    with torch.no_grad():
        for step in range(steps + 1):
            if record_every is not None and (step % record_every == 0 or step == steps):
                records.append(delta.clone())
                record_steps.append(step)
            if step == steps:
                break
            gradient = _row_gradient(delta, x, s, beta_t, specs)  # (..., d)
            delta = delta - 2 * lr * gradient

    if record_every is None:
        return GDResult(delta=delta)
    trajectory = torch.stack(records, dim=-2)  # (..., T, d)
    return GDResult(delta=delta, trajectory=trajectory, record_steps=torch.tensor(record_steps))


# --- Gradient flow: the margin ODE and the IPO closed form -------------------


@dataclass(frozen=True)
class MarginODESolution:
    """Solution of the margin ODE at the requested times.

    Attributes
    ----------
    t
        Times, shape (T,).
    margins
        Margins ``r_i(t)``, shape (T, N).
    delta
        ``Delta(t)``, shape (T, d), integrated alongside the margins.
    """

    t: np.ndarray
    margins: np.ndarray
    delta: np.ndarray


def second_moments(x: Tensor | np.ndarray, s: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``S = (1/N) sum_j x_j x_j^T`` and ``m = (1/N) sum_j s_j x_j`` (float64).

    ``x`` has shape (N, d) and ``s`` shape (N,); ``m`` is the difference of
    the class means as labelled, weighted by the class shares.
    """
    x_np, s_np = _single_problem(x, s)
    n = x_np.shape[0]
    return x_np.T @ x_np / n, x_np.T @ s_np / n


def _single_problem(x: Tensor | np.ndarray, s: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_t = torch.as_tensor(x).to(torch.float64)
    s_t = torch.as_tensor(s).to(torch.float64)
    if x_t.ndim != 2:
        raise ValueError(f"x must have shape (N, d) for the ODE, got {tuple(x_t.shape)}")
    _check_shapes(x_t, s_t)
    if s_t.ndim != 1:
        raise ValueError(f"s must have shape (N,) for the ODE, got {tuple(s_t.shape)}")
    _check_finite("x", x_t)
    _check_labels(s_t)
    return x_t.cpu().numpy(), s_t.cpu().numpy()


def _initial_delta(delta0: Tensor | np.ndarray | None, d: int) -> np.ndarray:
    if delta0 is None:
        return np.zeros(d)
    value = np.asarray(torch.as_tensor(delta0).to(torch.float64).cpu(), dtype=np.float64)
    if value.shape != (d,):
        raise ValueError(f"shape mismatch: delta0 has shape {value.shape}, expected ({d},)")
    if not np.isfinite(value).all():
        raise ValueError("delta0 contains NaN or infinite entries")
    return value


def _check_times(t_eval: Sequence[float] | np.ndarray) -> np.ndarray:
    times = np.asarray(t_eval, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"t_eval must be a non-empty 1-D array of times, got shape {times.shape}")
    if not np.isfinite(times).all() or (times < 0).any() or (np.diff(times) < 0).any():
        raise ValueError("t_eval must be finite, >= 0 and non-decreasing")
    return times


def solve_margin_ode(
    x: Tensor | np.ndarray,
    s: Tensor | np.ndarray,
    loss: str | GPOLoss,
    *,
    beta: float,
    t_eval: Sequence[float] | np.ndarray,
    tau: float = 1.0,
    delta0: Tensor | np.ndarray | None = None,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> MarginODESolution:
    """Integrate the gradient-flow ODE of the margins with :func:`scipy.integrate.solve_ivp`.

    The state is the vector of margins ``r`` together with ``Delta``:

    .. math::

        \\tau \\dot r_i = -\\frac{2\\beta^2}{N} \\sum_j f'(r_j) s_i s_j \\langle x_i, x_j\\rangle,
        \\qquad
        \\tau \\dot\\Delta = -\\frac{2\\beta}{N} \\sum_j f'(r_j) s_j x_j,

    started at ``r(0) = beta * s * (X Delta0)``. The margins follow their own
    ODE (Lemma B.1); ``Delta`` rides along so that ``r = beta s X Delta``
    can be checked on the output.

    Parameters
    ----------
    x, s
        One problem: embeddings (N, d) and labels (N,) in {+1, -1}.
    loss
        Loss name or :class:`~noisypo.losses.GPOLoss`; ``f_prime`` is
        evaluated in float64 torch.
    beta, tau
        Temperature and inverse learning rate, both > 0.
    t_eval
        Non-decreasing times >= 0 at which to return the solution.
    delta0
        Initial ``Delta`` (d,); default zero.
    method, rtol, atol
        Passed to :func:`scipy.integrate.solve_ivp`.

    Returns
    -------
    MarginODESolution

    Notes
    -----
    For the hinge (SLiC), ``f'`` jumps at ``r = 1`` and the flow can slide
    along ``r_i = 1``; an adaptive integrator then takes very small steps
    and only resolves the sliding motion to its tolerance.

    Raises
    ------
    ValueError
        On invalid arguments. ``RuntimeError`` if the integrator fails.
    """
    spec = get_loss(loss)
    x_np, s_np = _single_problem(x, s)
    beta = _check_positive("beta", beta)
    tau = _check_positive("tau", tau)
    times = _check_times(t_eval)
    n, d = x_np.shape
    delta_start = _initial_delta(delta0, d)

    signed = s_np[:, None] * x_np  # rows s_j x_j, (N, d)
    gram = signed @ signed.T  # s_i s_j <x_i, x_j>, (N, N)
    margin_rate = 2 * beta**2 / (tau * n)
    delta_rate = 2 * beta / (tau * n)

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        r = state[:n]
        slope = spec.f_prime(torch.from_numpy(r)).numpy()  # f'(r_j), (N,)
        dr = -margin_rate * (gram @ slope)
        ddelta = -delta_rate * (signed.T @ slope)
        return np.concatenate([dr, ddelta])

    state0 = np.concatenate([beta * signed @ delta_start, delta_start])
    t_end = float(times[-1])
    if t_end == 0.0:
        states = np.repeat(state0[None, :], times.size, axis=0)
    else:
        solution = solve_ivp(rhs, (0.0, t_end), state0, method=method, t_eval=times, rtol=rtol, atol=atol)
        if not solution.success:
            raise RuntimeError(f"solve_ivp failed: {solution.message}")
        states = solution.y.T
    return MarginODESolution(t=times, margins=states[:, :n], delta=states[:, n:])


@dataclass(frozen=True)
class IPOSolution:
    """Closed-form IPO gradient flow at the requested times.

    Attributes
    ----------
    t
        Times, shape (T,).
    delta
        ``Delta(t)``, shape (T, d).
    margins
        ``r_i(t) = beta s_i x_i . Delta(t)``, shape (T, N).
    eigenvalues
        Eigenvalues of ``S`` (ascending), shape (d,).
    """

    t: np.ndarray
    delta: np.ndarray
    margins: np.ndarray
    eigenvalues: np.ndarray


def ipo_closed_form(
    x: Tensor | np.ndarray,
    s: Tensor | np.ndarray,
    t: Sequence[float] | np.ndarray,
    *,
    beta: float,
    tau: float = 1.0,
    delta0: Tensor | np.ndarray | None = None,
) -> IPOSolution:
    """Solve the IPO gradient flow exactly via the eigendecomposition of ``S``.

    IPO's flow is ``tau dDelta/dt = -4 beta^2 S Delta + 4 beta m``. With
    ``S = Q diag(lambda) Q^T`` and ``c = Q^T Delta``, each coordinate obeys a
    scalar linear ODE, so with ``a = 4 beta^2 / tau``

    .. math::

        c_k(t) = e^{-a\\lambda_k t} c_k(0)
                 + \\frac{4\\beta}{\\tau} (Q^\\top m)_k \\, t \\, \\varphi_1(a\\lambda_k t),
        \\qquad \\varphi_1(u) = \\frac{1 - e^{-u}}{u},\\ \\varphi_1(0) = 1 .

    Directions with ``lambda_k = 0`` (when N < d) grow linearly, but ``m``
    has no component there, so ``Delta`` stays bounded.

    Parameters
    ----------
    x, s
        One problem: embeddings (N, d) and labels (N,) in {+1, -1}.
    t
        Times >= 0, shape (T,).
    beta, tau
        Temperature and inverse learning rate, both > 0.
    delta0
        Initial ``Delta`` (d,); default zero.
    """
    x_np, s_np = _single_problem(x, s)
    beta = _check_positive("beta", beta)
    tau = _check_positive("tau", tau)
    times = _check_times(t)
    second, mean = second_moments(x_np, s_np)
    eigenvalues, basis = np.linalg.eigh(second)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # S is PSD; drop round-off below 0
    c0 = basis.T @ _initial_delta(delta0, x_np.shape[1])  # (d,)
    forcing = basis.T @ mean  # (d,)

    rate = 4 * beta**2 / tau
    u = rate * eigenvalues[None, :] * times[:, None]  # (T, d)
    phi1 = np.ones_like(u)
    positive = u > 0
    phi1[positive] = -np.expm1(-u[positive]) / u[positive]
    coords = np.exp(-u) * c0 + (4 * beta / tau) * forcing * times[:, None] * phi1  # (T, d)
    delta = coords @ basis.T
    margin = beta * s_np[None, :] * (delta @ x_np.T)
    return IPOSolution(t=times, delta=delta, margins=margin, eigenvalues=eigenvalues)
