"""GPO losses: DPO, IPO and SLiC as convex functions of the reward margin.

Generalized preference optimization (GPO, Tang et al., 2024) writes a family
of offline preference losses as

.. math::

    L(W) = \\frac{1}{N} \\sum_{i=1}^{N} f(\\beta h_i),
    \\qquad
    h_i = \\log\\frac{\\pi_W(y_w^i \\mid x_i)}{\\pi_{\\mathrm{ref}}(y_w^i \\mid x_i)}
        - \\log\\frac{\\pi_W(y_l^i \\mid x_i)}{\\pi_{\\mathrm{ref}}(y_l^i \\mid x_i)},

where :math:`r = \\beta h` is the reward margin and :math:`f` a convex
function. The three members the book studies are

======  =========================  =========  ==================
name    :math:`f(z)`               f'(0)      M = sup |f''|
======  =========================  =========  ==================
dpo     log(1 + e^{-z})            -1/2       1/4
ipo     (z - 1)^2                  -2         2
slic    max(0, 1 - z)              -1         none (kink at 1)
======  =========================  =========  ==================

Correspondence with TRL 1.16 ``DPOTrainer`` (``trl/trainer/dpo_trainer.py``,
``DPOTrainer._compute_loss``). TRL forms ``delta_score = h`` from sums of
token log-probabilities and then computes, per pair,

``"sigmoid"``
    ``-logsigmoid(beta * h)``, which is ``f_dpo(beta * h)``: the same
    function with the same beta.
``"hinge"``
    ``relu(1 - beta * h)``, which is ``f_slic(beta * h)``: the same function
    with the same beta.
``"ipo"``
    ``(h_avg - 1 / (2 * beta)) ** 2`` where ``h_avg`` divides each log-ratio
    by the number of completion tokens. For single-token answers
    ``h_avg = h`` and ``(h - 1/(2 b))^2 = f_ipo(2 b h) / (4 b^2)``, so the
    book's IPO with temperature ``beta`` equals ``beta**2`` times TRL's IPO
    run with ``beta / 2``. The minimiser is the same, the gradient is
    scaled by ``beta**2``, and for longer answers TRL's margin is the
    per-token average, not the sum.

:func:`trl_equivalent` returns this map, and the tests check it by calling
TRL's own loss code on the same log-probabilities.

References
----------
Y. Tang et al., "Generalized Preference Optimization: A Unified Approach to
Offline Alignment", ICML 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import sympy
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "GPOLoss",
    "LOSSES",
    "TRLEquivalent",
    "Z",
    "get_loss",
    "trl_equivalent",
]

#: The SymPy symbol every ``GPOLoss.sympy_f`` is written in (the margin z).
Z = sympy.Symbol("z", real=True)


@dataclass(frozen=True)
class GPOLoss:
    """One member of the GPO family: a convex function f of the margin.

    Parametrised objectives (for example conservative DPO with a flip rate)
    are instances of this class too: build ``f`` and ``f_prime`` as closures
    over the parameters and record the values in ``params``.

    Attributes
    ----------
    name
        Short lower-case name, the key in :data:`LOSSES` for built-in losses.
    f
        Elementwise loss of the margin ``z = beta * h`` (torch, any shape).
    f_prime
        Elementwise derivative ``f'(z)``. Where f has a kink, the value is
        the one torch autograd returns (for the hinge, 0 at z = 1).
    sympy_f
        The same f as a SymPy expression in the symbol :data:`Z`.
    f_prime_at_zero
        ``f'(0)``: the slope that sets the first direction of training.
    curvature_bound
        ``M = sup_z |f''(z)|``, or ``None`` when f'' is unbounded or does
        not exist as a function (the hinge).
    trl_loss_type
        The matching ``DPOConfig.loss_type`` in TRL, or ``None``.
    params
        Parameters of a parametrised loss (read-only), empty for the three
        built-in losses.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    sympy_f: sympy.Expr
    f_prime_at_zero: float
    curvature_bound: float | None
    trl_loss_type: str | None = None
    # Left out of the hash because a read-only mapping is unhashable, so
    # losses can still be dict keys; equality still compares it.
    params: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"invalid loss name {self.name!r}: expected a non-empty string")
        for attribute in ("f", "f_prime"):
            if not callable(getattr(self, attribute)):
                raise TypeError(f"GPOLoss.{attribute} must be callable, got {getattr(self, attribute)!r}")
        if not math.isfinite(self.f_prime_at_zero):
            raise ValueError(f"invalid f_prime_at_zero={self.f_prime_at_zero!r}: expected a finite float")
        bound = self.curvature_bound
        if bound is not None and not (math.isfinite(bound) and bound >= 0):
            raise ValueError(f"invalid curvature_bound={bound!r}: expected None or a finite float >= 0")
        # A read-only copy, so that the frozen dataclass stays immutable.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __call__(self, z: Tensor) -> Tensor:
        """Evaluate ``f(z)`` elementwise."""
        return self.f(z)

    def sympy_f_prime(self) -> sympy.Expr:
        """Return f' as a SymPy expression in :data:`Z`."""
        return sympy.diff(self.sympy_f, Z)

    def sympy_f_second(self) -> sympy.Expr:
        """Return f'' as a SymPy expression in :data:`Z`."""
        return sympy.diff(self.sympy_f, Z, 2)


# --- The three built-in losses -------------------------------------------


def _dpo_f(z: Tensor) -> Tensor:
    # log(1 + e^{-z}) = -log sigmoid(z), stable for large |z|.
    return -F.logsigmoid(z)


def _dpo_f_prime(z: Tensor) -> Tensor:
    return -torch.sigmoid(-z)


def _ipo_f(z: Tensor) -> Tensor:
    return (z - 1) ** 2


def _ipo_f_prime(z: Tensor) -> Tensor:
    return 2 * (z - 1)


def _slic_f(z: Tensor) -> Tensor:
    return torch.relu(1 - z)


def _slic_f_prime(z: Tensor) -> Tensor:
    # -1 below the hinge and 0 from z = 1 on, which is what autograd of
    # relu(1 - z) returns (torch takes relu'(0) = 0).
    return -(z < 1).to(z.dtype)


DPO = GPOLoss(
    name="dpo",
    f=_dpo_f,
    f_prime=_dpo_f_prime,
    sympy_f=sympy.log(1 + sympy.exp(-Z)),
    f_prime_at_zero=-0.5,
    curvature_bound=0.25,
    trl_loss_type="sigmoid",
)
IPO = GPOLoss(
    name="ipo",
    f=_ipo_f,
    f_prime=_ipo_f_prime,
    sympy_f=(Z - 1) ** 2,
    f_prime_at_zero=-2.0,
    curvature_bound=2.0,
    trl_loss_type="ipo",
)
SLIC = GPOLoss(
    name="slic",
    f=_slic_f,
    f_prime=_slic_f_prime,
    sympy_f=sympy.Max(0, 1 - Z),
    f_prime_at_zero=-1.0,
    curvature_bound=None,
    trl_loss_type="hinge",
)

#: Registry of the built-in losses by lower-case name.
LOSSES: Mapping[str, GPOLoss] = MappingProxyType({loss.name: loss for loss in (DPO, IPO, SLIC)})


def get_loss(name: str | GPOLoss) -> GPOLoss:
    """Return the GPO loss called ``name`` (case-insensitive).

    Parameters
    ----------
    name
        ``"dpo"``, ``"ipo"`` or ``"slic"``. A :class:`GPOLoss` is returned
        unchanged, so that functions can accept either form.

    Raises
    ------
    ValueError
        If ``name`` is not a registered loss.

    Examples
    --------
    >>> import torch
    >>> dpo = get_loss("DPO")
    >>> dpo.f_prime_at_zero, dpo.curvature_bound
    (-0.5, 0.25)
    >>> dpo.f(torch.tensor([0.0]))
    tensor([0.6931])
    """
    if isinstance(name, GPOLoss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str or GPOLoss, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in LOSSES:
        raise ValueError(f"unknown GPO loss {name!r}: expected one of {', '.join(LOSSES)}")
    return LOSSES[key]


@dataclass(frozen=True)
class TRLEquivalent:
    """Settings of TRL's ``DPOTrainer`` that reproduce a book loss.

    For single-token answers, the book's loss with temperature ``beta``
    equals ``scale`` times TRL's loss with ``loss_type`` and ``beta=trl_beta``.
    """

    loss_type: str
    trl_beta: float
    scale: float


def trl_equivalent(loss: str | GPOLoss, beta: float) -> TRLEquivalent:
    """Return the TRL ``DPOTrainer`` settings equivalent to a book loss.

    Parameters
    ----------
    loss
        ``"dpo"``, ``"ipo"``, ``"slic"`` or a built-in :class:`GPOLoss`.
    beta
        The book's temperature (> 0).

    Returns
    -------
    TRLEquivalent
        ``("sigmoid", beta, 1)`` for DPO, ``("hinge", beta, 1)`` for SLiC and
        ``("ipo", beta / 2, beta**2)`` for IPO, because
        ``(beta h - 1)^2 = beta^2 (h - 1 / (2 (beta / 2)))^2``.

    Notes
    -----
    The IPO identity holds for TRL's per-token averaged margin. It equals the
    book's margin ``h`` only when both answers are one token long.

    Raises
    ------
    ValueError
        If ``beta`` is not a finite positive number or the loss has no TRL
        counterpart.

    Examples
    --------
    >>> trl_equivalent("ipo", 0.2)
    TRLEquivalent(loss_type='ipo', trl_beta=0.1, scale=0.04000000000000001)
    """
    spec = get_loss(loss)
    beta = _check_beta(beta)
    if spec is DPO:
        return TRLEquivalent("sigmoid", beta, 1.0)
    if spec is SLIC:
        return TRLEquivalent("hinge", beta, 1.0)
    if spec is IPO:
        return TRLEquivalent("ipo", beta / 2, beta**2)
    raise ValueError(f"loss {spec.name!r} has no known TRL loss_type; only dpo, ipo and slic do")


def _check_beta(beta: float) -> float:
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a real number, got {beta!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"invalid beta={beta!r}: expected a finite number > 0")
    return value
