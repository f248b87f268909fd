"""Noise-robust preference losses as members of the GPO family.

Each objective here is a function of the reward margin ``z = beta * h``
and therefore a :class:`noisypo.losses.GPOLoss`, so that
:func:`noisypo.dynamics.gradient_descent` and the experiment engines run it
exactly as they run DPO, IPO and SLiC. With the logistic loss
:math:`\\ell(z) = \\log(1 + e^{-z})` and an assumed flip rate
:math:`\\varepsilon`:

conservative DPO (cDPO, Mitchell, 2023)
    .. math:: f_{\\mathrm{c}}(z) = (1 - \\varepsilon)\\,\\ell(z) + \\varepsilon\\,\\ell(-z),

    the DPO loss averaged over the flip model (label smoothing).
    :math:`f_{\\mathrm{c}}'(0) = -(1 - 2\\varepsilon)/2` and the loss has a
    finite minimiser :math:`z^* = \\log((1 - \\varepsilon)/\\varepsilon)`.
robust DPO (rDPO, Ray Chowdhury et al., 2024)
    .. math:: f_{\\mathrm{r}}(z) = \\frac{(1 - \\varepsilon)\\,\\ell(z) - \\varepsilon\\,\\ell(-z)}{1 - 2\\varepsilon},

    the unbiased correction: averaged over the flip model it returns the
    clean loss, :math:`(1 - \\varepsilon) f_{\\mathrm{r}}(z) + \\varepsilon
    f_{\\mathrm{r}}(-z) = \\ell(z)`. :math:`f_{\\mathrm{r}}'(0) = -1/(2(1 -
    2\\varepsilon))`, and :math:`f_{\\mathrm{r}}(z) \\to -\\infty` linearly as
    :math:`z \\to \\infty`.
ROPO (Liang et al., 2024)
    .. math:: f_{\\mathrm{ROPO}}(z) = \\frac{4\\alpha}{(1 + \\alpha)^2}
              \\bigl[\\ell(z) + \\alpha\\,\\sigma(-z)\\bigr],

    the DPO loss plus the bounded, symmetric sigmoid loss
    :math:`\\sigma(-z)` (:math:`\\sigma(z) + \\sigma(-z) = 1`), which damps
    the gradient of pairs whose margin strongly contradicts their label.
    The factor makes the largest gradient weight :math:`-f'(z)` equal to 1
    for :math:`\\alpha \\ge 1`. This module implements only this per-pair
    loss, not ROPO's iterative filtering of suspected noisy pairs or its
    rejection sampling.

All three leave the direction of the first gradient step unchanged: at
:math:`\\Delta = 0` every margin is 0, so the step is :math:`-f'(0)` times
the labelled mean :math:`m` for any :math:`f`. The objectives differ in
:math:`f'(0)` (the speed of that step) and in the shape of :math:`f` away
from 0.

Correspondence with TRL 1.16 (``trl/trainer/dpo_trainer.py``,
``DPOTrainer._compute_loss``): ``loss_type="robust"`` with
``label_smoothing=epsilon`` computes rDPO per pair with the same ``beta``.
TRL 1.16 has no cDPO loss type: ``loss_type="sigmoid"`` reads
``label_smoothing`` nowhere, so setting it leaves plain DPO.
:func:`trl_pair_losses` evaluates TRL's own loss code on chosen margins so
that both facts can be checked numerically.

References
----------
E. Mitchell, "A note on DPO with noisy preferences & relationship to IPO",
2023. https://ericmitchell.ai/cdpo.pdf

S. Ray Chowdhury, A. Kini, N. Natarajan, "Provably Robust DPO: Aligning
Language Models with Noisy Feedback", ICML 2024.

X. Liang et al., "ROPO: Robust Preference Optimization for Large Language
Models", arXiv:2404.04102, 2024 (ICML 2025).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from types import MappingProxyType, SimpleNamespace
from typing import Callable, Mapping

import numpy as np
import sympy
import torch
from torch import Tensor
from torch.nn import functional as F

from noisypo.losses import LOSSES, GPOLoss, Z, get_loss

__all__ = [
    "ROBUST_LOSSES",
    "conservative_dpo",
    "flip_average",
    "make_loss",
    "robust_dpo",
    "ropo",
    "trl_pair_losses",
]


class FlipRateWarning(UserWarning):
    """An assumed flip rate at or above 1/2, where a noise correction breaks down."""


def _check_epsilon(epsilon: float, name: str) -> float:
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: epsilon must be a real number, got {epsilon!r}") from None
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name}: invalid epsilon={epsilon!r}; expected a flip rate in [0, 1)")
    return value


# --- conservative DPO ------------------------------------------------------


def conservative_dpo(epsilon: float) -> GPOLoss:
    """Return conservative DPO (label-smoothed DPO) for an assumed flip rate.

    .. math::

        f(z) = (1 - \\varepsilon) \\log(1 + e^{-z}) + \\varepsilon \\log(1 + e^{z})

    Parameters
    ----------
    epsilon
        Assumed flip rate in [0, 1). ``epsilon = 0`` gives DPO.

    Returns
    -------
    GPOLoss
        Named ``"cdpo"`` with ``params={"epsilon": epsilon}``,
        ``f'(0) = -(1 - 2 epsilon) / 2`` and ``M = sup |f''| = 1/4``
        (``f''(z) = sigma(z) sigma(-z)`` for every epsilon).

    Warns
    -----
    FlipRateWarning
        If ``epsilon >= 1/2``: at 1/2 the loss is symmetric, ``f'(0) = 0`` and
        gradient descent from the reference does not move; above 1/2 it
        learns the reversed preference.

    Notes
    -----
    cDPO is :func:`flip_average` of DPO: the expected DPO loss when each label
    is flipped with probability epsilon. Its minimiser is the finite margin
    ``z* = log((1 - epsilon) / epsilon)``, so margins stop growing, as under
    IPO. TRL 1.16 has no matching loss type (``"sigmoid"`` ignores
    ``label_smoothing``), so ``trl_loss_type`` is ``None``.

    References
    ----------
    E. Mitchell, "A note on DPO with noisy preferences & relationship to
    IPO", 2023.

    Examples
    --------
    >>> loss = conservative_dpo(0.1)
    >>> round(loss.f_prime_at_zero, 3)
    -0.4
    """
    epsilon = _check_epsilon(epsilon, "conservative_dpo")
    if epsilon >= 0.5:
        warnings.warn(
            f"conservative_dpo: epsilon={epsilon} >= 1/2 makes f'(0) = {-(1 - 2 * epsilon) / 2:g}: "
            "at 1/2 nothing is learned and above it the preference is reversed",
            FlipRateWarning,
            stacklevel=2,
        )

    def f(z: Tensor) -> Tensor:
        return (1 - epsilon) * -F.logsigmoid(z) + epsilon * -F.logsigmoid(-z)

    def f_prime(z: Tensor) -> Tensor:
        return -(1 - epsilon) * torch.sigmoid(-z) + epsilon * torch.sigmoid(z)

    eps = sympy.nsimplify(epsilon)
    return GPOLoss(
        name="cdpo",
        f=f,
        f_prime=f_prime,
        sympy_f=(1 - eps) * sympy.log(1 + sympy.exp(-Z)) + eps * sympy.log(1 + sympy.exp(Z)),
        f_prime_at_zero=-(1 - 2 * epsilon) / 2,
        curvature_bound=0.25,
        trl_loss_type=None,
        params={"epsilon": epsilon},
    )


# --- robust DPO ------------------------------------------------------------


def robust_dpo(epsilon: float) -> GPOLoss:
    """Return robust DPO, the unbiased flip-noise correction of DPO.

    .. math::

        f(z) = \\frac{(1 - \\varepsilon) \\log(1 + e^{-z})
                      - \\varepsilon \\log(1 + e^{z})}{1 - 2\\varepsilon}

    Parameters
    ----------
    epsilon
        Assumed flip rate in [0, 1/2) or (1/2, 1). ``epsilon = 0`` gives DPO.

    Returns
    -------
    GPOLoss
        Named ``"rdpo"`` with ``params={"epsilon": epsilon}``,
        ``f'(0) = -1 / (2 (1 - 2 epsilon))``, ``M = 1/4``
        (``f''(z) = sigma(z) sigma(-z)`` for every epsilon) and
        ``trl_loss_type="robust"`` (TRL's ``label_smoothing`` is epsilon).

    Raises
    ------
    ValueError
        If ``epsilon`` is outside [0, 1) or equal to 1/2, where the factor
        ``1 / (1 - 2 epsilon)`` is infinite.

    Warns
    -----
    FlipRateWarning
        If ``epsilon > 1/2``. The loss is then rDPO with flip rate
        ``1 - epsilon`` applied to the reversed labels, and it trains towards
        the reversed preference. Near 1/2 the factor is large and the
        gradient noise grows with it.

    Notes
    -----
    Unbiasedness: :func:`flip_average` of this loss with the same epsilon is
    DPO. If the true rate is ``eps_true`` and the assumed one ``epsilon``,
    the flip average is
    ``c1 * log(1 + e^{-z}) + c2 * log(1 + e^{z})`` with
    ``c2 = (eps_true - epsilon) / (1 - 2 epsilon)``. An underestimate
    (``c2 > 0``) leaves residual label smoothing, an overestimate
    (``c2 < 0``) rewards large margins without bound.

    References
    ----------
    S. Ray Chowdhury, A. Kini, N. Natarajan, "Provably Robust DPO: Aligning
    Language Models with Noisy Feedback", ICML 2024.

    Examples
    --------
    >>> loss = robust_dpo(0.25)
    >>> loss.f_prime_at_zero
    -1.0
    """
    epsilon = _check_epsilon(epsilon, "robust_dpo")
    if epsilon == 0.5:
        raise ValueError(
            "robust_dpo: invalid epsilon=0.5; the correction divides by 1 - 2 epsilon = 0. "
            "At a flip rate of 1/2 the labels carry no information; use epsilon < 1/2"
        )
    if epsilon > 0.5:
        warnings.warn(
            f"robust_dpo: epsilon={epsilon} > 1/2 trains towards the reversed preference "
            f"(it equals rDPO with flip rate {1 - epsilon:g} on flipped labels)",
            FlipRateWarning,
            stacklevel=2,
        )
    scale = 1.0 / (1.0 - 2.0 * epsilon)

    def f(z: Tensor) -> Tensor:
        return scale * ((1 - epsilon) * -F.logsigmoid(z) - epsilon * -F.logsigmoid(-z))

    def f_prime(z: Tensor) -> Tensor:
        return scale * (-(1 - epsilon) * torch.sigmoid(-z) - epsilon * torch.sigmoid(z))

    eps = sympy.nsimplify(epsilon)
    sympy_f = ((1 - eps) * sympy.log(1 + sympy.exp(-Z)) - eps * sympy.log(1 + sympy.exp(Z))) / (
        1 - 2 * eps
    )
    return GPOLoss(
        name="rdpo",
        f=f,
        f_prime=f_prime,
        sympy_f=sympy_f,
        f_prime_at_zero=-0.5 * scale,
        curvature_bound=0.25,
        trl_loss_type="robust",
        params={"epsilon": epsilon},
    )


# --- ROPO --------------------------------------------------------------------


def _ropo_curvature_bound(alpha: float) -> float:
    # f'' = c p (1 - p) (1 - alpha + 2 alpha p) with p = sigmoid(z) in (0, 1):
    # a cubic in p whose largest |value| sits at an end point or a critical point.
    cubic = np.polynomial.Polynomial([0.0, 1.0 - alpha, 3.0 * alpha - 1.0, -2.0 * alpha])
    candidates = [p.real for p in cubic.deriv().roots() if abs(p.imag) < 1e-12 and 0 < p.real < 1]
    values = np.abs(cubic(np.asarray(candidates + [0.0, 1.0])))
    return float(4 * alpha / (1 + alpha) ** 2 * values.max())


def ropo(alpha: float) -> GPOLoss:
    """Return the per-pair ROPO loss with trade-off ``alpha``.

    .. math::

        f(z) = \\frac{4\\alpha}{(1 + \\alpha)^2}
               \\bigl[\\log(1 + e^{-z}) + \\alpha\\, \\sigma(-z)\\bigr]

    Parameters
    ----------
    alpha
        Weight (> 0) of the sigmoid loss ``sigma(-z)`` against the DPO loss.
        Larger values damp pairs with a strongly negative margin more.

    Returns
    -------
    GPOLoss
        Named ``"ropo"`` with ``params={"alpha": alpha}``,
        ``f'(0) = -alpha (2 + alpha) / (1 + alpha)^2`` and ``M`` computed
        exactly from ``f''(z) = c p (1 - p) (1 - alpha + 2 alpha p)``,
        ``p = sigmoid(z)``, ``c = 4 alpha / (1 + alpha)^2``. ROPO has no TRL
        loss type.

    Raises
    ------
    ValueError
        If ``alpha`` is not a finite positive number.

    Notes
    -----
    The gradient weight is ``-f'(z) = c (1 - p) (1 + alpha p)``. For
    ``alpha >= 1`` its maximum over z is exactly 1, reached at
    ``p = (alpha - 1) / (2 alpha)``, so the factor ``c`` normalises the
    largest weight. As ``z -> -infinity`` the weight tends to ``c`` (about
    0.25 for ``alpha = 14``) where DPO's tends to 1, so a pair whose margin
    strongly contradicts its label pulls less than under DPO.
    For ``alpha > 1`` the loss is not convex (``f'' < 0`` where
    ``p < (alpha - 1) / (2 alpha)``).

    NOTE: the bracket and the factor are the per-pair loss of Liang et al.
    (2024) as the book reads it; the published text could not be opened
    offline, so check the constant against the paper before relying on it.
    The paper's iterative sample filtering and rejection sampling are not
    part of this loss.

    References
    ----------
    X. Liang et al., "ROPO: Robust Preference Optimization for Large Language
    Models", arXiv:2404.04102, 2024 (ICML 2025).
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"ropo: alpha must be a real number, got {alpha!r}") from None
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"ropo: invalid alpha={alpha!r}; expected a finite number > 0")
    scale = 4.0 * alpha / (1.0 + alpha) ** 2

    def f(z: Tensor) -> Tensor:
        return scale * (-F.logsigmoid(z) + alpha * torch.sigmoid(-z))

    def f_prime(z: Tensor) -> Tensor:
        p = torch.sigmoid(z)
        return -scale * (1 - p) * (1 + alpha * p)

    a = sympy.nsimplify(alpha)
    sympy_f = 4 * a / (1 + a) ** 2 * (sympy.log(1 + sympy.exp(-Z)) + a / (1 + sympy.exp(Z)))
    return GPOLoss(
        name="ropo",
        f=f,
        f_prime=f_prime,
        sympy_f=sympy_f,
        f_prime_at_zero=-alpha * (2 + alpha) / (1 + alpha) ** 2,
        curvature_bound=_ropo_curvature_bound(alpha),
        trl_loss_type=None,
        params={"alpha": alpha},
    )


# --- registry and flip averaging ---------------------------------------------

#: Constructors of the robust losses by name, with the name of their parameter.
ROBUST_LOSSES: Mapping[str, tuple[Callable[[float], GPOLoss], str]] = MappingProxyType(
    {
        "cdpo": (conservative_dpo, "epsilon"),
        "rdpo": (robust_dpo, "epsilon"),
        "ropo": (ropo, "alpha"),
    }
)


def make_loss(name: str, **params: float) -> GPOLoss:
    """Return a built-in GPO loss or a robust loss built with its parameter.

    Parameters
    ----------
    name
        ``"dpo"``, ``"ipo"``, ``"slic"`` (no parameters), ``"cdpo"`` or
        ``"rdpo"`` (keyword ``epsilon``), or ``"ropo"`` (keyword ``alpha``);
        case-insensitive.
    **params
        The one parameter of a robust loss.

    Raises
    ------
    ValueError
        If the name is unknown, or the parameters do not match the loss.

    Examples
    --------
    >>> make_loss("rdpo", epsilon=0.1).params["epsilon"]
    0.1
    """
    key = str(name).strip().lower()
    if key in LOSSES:
        if params:
            raise ValueError(f"loss {key!r} takes no parameters, got {sorted(params)}")
        return get_loss(key)
    if key not in ROBUST_LOSSES:
        known = ", ".join([*LOSSES, *ROBUST_LOSSES])
        raise ValueError(f"unknown loss {name!r}: expected one of {known}")
    build, parameter = ROBUST_LOSSES[key]
    if set(params) != {parameter}:
        raise ValueError(f"loss {key!r} needs exactly the keyword {parameter!r}, got {sorted(params)}")
    return build(params[parameter])


def flip_average(loss: str | GPOLoss, epsilon: float) -> GPOLoss:
    """Return the expected loss of a pair whose label flips with probability epsilon.

    .. math:: \\bar f(z) = (1 - \\varepsilon) f(z) + \\varepsilon f(-z)

    This is what gradient descent on flipped data minimises on average.
    ``flip_average("dpo", eps)`` is conservative DPO, and
    ``flip_average(robust_dpo(eps), eps)`` is DPO again.

    Parameters
    ----------
    loss
        A GPO loss or the name of a built-in one.
    epsilon
        Flip rate in [0, 1].

    Returns
    -------
    GPOLoss
        Named ``"<name>-flip"``, with ``f'(0) = (1 - 2 epsilon) f'(0)`` and the
        curvature bound of ``loss`` (``|fbar''| <= M``).

    Raises
    ------
    ValueError
        If ``epsilon`` is outside [0, 1].
    """
    base = get_loss(loss)
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise TypeError(f"flip_average: epsilon must be a real number, got {epsilon!r}") from None
    if not (0.0 <= eps <= 1.0):
        raise ValueError(f"flip_average: invalid epsilon={epsilon!r}; expected a rate in [0, 1]")

    def f(z: Tensor) -> Tensor:
        return (1 - eps) * base.f(z) + eps * base.f(-z)

    def f_prime(z: Tensor) -> Tensor:
        return (1 - eps) * base.f_prime(z) - eps * base.f_prime(-z)

    e = sympy.nsimplify(eps)
    return GPOLoss(
        name=f"{base.name}-flip",
        f=f,
        f_prime=f_prime,
        sympy_f=(1 - e) * base.sympy_f + e * base.sympy_f.subs(Z, -Z),
        f_prime_at_zero=(1 - 2 * eps) * base.f_prime_at_zero,
        curvature_bound=base.curvature_bound,
        trl_loss_type=None,
        params={**base.params, "flip_rate": eps},
    )


# --- TRL reference values ----------------------------------------------------


def trl_pair_losses(
    loss_type: str, h: Tensor, *, beta: float, label_smoothing: float = 0.0
) -> Tensor:
    """Return TRL's per-pair loss for the given log-ratio differences ``h``.

    Runs the loss code of the installed TRL ``DPOTrainer._compute_loss`` (checked
    against TRL 1.16) on a stand-in model whose summed completion
    log-probabilities are ``h`` for the chosen and 0 for the rejected answer,
    with reference log-probabilities 0 and one completion token per answer.
    Each pair is a batch of one, so the batch mean TRL returns is the per-pair
    loss.

    Parameters
    ----------
    loss_type
        A TRL ``DPOConfig.loss_type`` such as ``"sigmoid"`` or ``"robust"``.
    h
        Log-ratio differences, shape (P,).
    beta, label_smoothing
        The ``DPOConfig`` fields of the same names.

    Returns
    -------
    Tensor
        Shape (P,), float64.

    Notes
    -----
    NOTE: this calls a private TRL method through a stand-in trainer object.
    It needs no model weights and no tokenizer, but a TRL release that
    renames the attributes it reads will raise ``AttributeError`` here.
    """
    from trl import DPOTrainer

    values = torch.as_tensor(h, dtype=torch.float64).reshape(-1)
    stand_in = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(
            device=torch.device("cpu"), gather_for_metrics=lambda t: t, gather=lambda t: t
        ),
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=1.0,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=float(beta),
        label_smoothing=float(label_smoothing),
        use_weighting=False,
        args=SimpleNamespace(discopop_tau=0.05),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    # Rows are [chosen, rejected]; position 0 is the prompt, position 1 the answer.
    input_ids = torch.zeros(2, 2, dtype=torch.long)
    completion_mask = torch.tensor([[0, 1], [0, 1]])
    losses = []
    for value in values:
        log_probs = torch.zeros(2, 1, dtype=torch.float64)  # (2, seq_len - 1)
        log_probs[0, 0] = value

        def model(log_probs=log_probs, **_: object) -> SimpleNamespace:
            return SimpleNamespace(
                log_probs=log_probs,
                entropy=torch.zeros_like(log_probs),
                mean_logits=torch.zeros_like(log_probs),
                is_top1=torch.zeros_like(log_probs, dtype=torch.bool),
            )

        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "completion_mask": completion_mask,
            "ref_chosen_logps": torch.zeros(1, dtype=torch.float64),
            "ref_rejected_logps": torch.zeros(1, dtype=torch.float64),
        }
        loss = DPOTrainer._compute_loss(stand_in, model, inputs, False)
        losses.append(torch.as_tensor(loss, dtype=torch.float64))
    return torch.stack(losses)
