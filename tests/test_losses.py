"""Tests of the GPO losses: SymPy twins, constants, and agreement with TRL 1.16."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import sympy
import torch

from noisypo import dynamics
from noisypo.losses import LOSSES, GPOLoss, Z, get_loss, trl_equivalent

NAMES = ("dpo", "ipo", "slic")
# Margins away from the hinge's kink at z = 1, where f' is not defined.
GRID = torch.linspace(-8.0, 8.0, 321, dtype=torch.float64)
GRID = GRID[(GRID - 1).abs() > 1e-9]


# --- registry and validation -------------------------------------------------


def test_registry_contains_three_losses():
    assert set(LOSSES) == set(NAMES)


@pytest.mark.parametrize("name", ["DPO", " Ipo ", "slic"])
def test_get_loss_is_case_insensitive(name):
    assert get_loss(name) is LOSSES[name.strip().lower()]


def test_get_loss_unknown_name_lists_names():
    with pytest.raises(ValueError, match="dpo, ipo, slic"):
        get_loss("kto")


def test_get_loss_passes_instance_through():
    loss = get_loss("dpo")
    assert get_loss(loss) is loss


def test_get_loss_rejects_non_string():
    with pytest.raises(TypeError):
        get_loss(3)


def test_gpoloss_rejects_bad_constants():
    base = dict(name="x", f=torch.relu, f_prime=torch.sign, sympy_f=Z, f_prime_at_zero=0.0)
    with pytest.raises(ValueError, match="curvature_bound"):
        GPOLoss(**base, curvature_bound=-1.0)
    with pytest.raises(ValueError, match="f_prime_at_zero"):
        GPOLoss(**{**base, "f_prime_at_zero": float("nan")}, curvature_bound=None)
    with pytest.raises(TypeError, match="callable"):
        GPOLoss(**{**base, "f": 1.0}, curvature_bound=None)


def test_gpoloss_params_are_read_only():
    loss = GPOLoss(
        name="scaled", f=torch.relu, f_prime=torch.sign, sympy_f=Z, f_prime_at_zero=0.0,
        curvature_bound=None, params={"epsilon": 0.1},
    )
    with pytest.raises(TypeError):
        loss.params["epsilon"] = 0.2


def test_gpoloss_is_hashable():
    custom = GPOLoss(
        name="scaled", f=torch.relu, f_prime=torch.sign, sympy_f=Z, f_prime_at_zero=0.0,
        curvature_bound=None, params={"epsilon": 0.1},
    )
    table = {get_loss("dpo"): 1, custom: 2}
    assert table[get_loss("dpo")] == 1
    assert table[custom] == 2


# --- torch functions against their SymPy twins and autograd ------------------


@pytest.mark.parametrize("name", NAMES)
def test_f_matches_sympy(name):
    loss = get_loss(name)
    numeric = sympy.lambdify(Z, loss.sympy_f, modules="numpy")
    expected = torch.as_tensor(numeric(GRID.numpy()), dtype=torch.float64)
    torch.testing.assert_close(loss.f(GRID), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_f_prime_matches_sympy(name):
    loss = get_loss(name)
    derivative = loss.sympy_f_prime().rewrite(sympy.Piecewise)
    numeric = sympy.lambdify(Z, derivative, modules="numpy")
    expected = torch.as_tensor(numeric(GRID.numpy()), dtype=torch.float64) * torch.ones_like(GRID)
    torch.testing.assert_close(loss.f_prime(GRID), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_f_prime_matches_autograd(name):
    loss = get_loss(name)
    generator = torch.Generator().manual_seed(1)
    z = (6 * torch.randn(500, generator=generator, dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.f(z).sum(), z)
    torch.testing.assert_close(loss.f_prime(z.detach()), grad, rtol=1e-12, atol=1e-14)


def test_slic_f_prime_at_kink_matches_autograd():
    loss = get_loss("slic")
    z = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss.f(z).sum(), z)
    assert loss.f_prime(z.detach()).item() == grad.item()


@pytest.mark.parametrize("name", NAMES)
def test_f_prime_at_zero_matches_sympy(name):
    loss = get_loss(name)
    assert float(loss.sympy_f_prime().subs(Z, 0)) == loss.f_prime_at_zero


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_curvature_bound_is_sup_of_second_derivative(name):
    loss = get_loss(name)
    second = sympy.lambdify(Z, loss.sympy_f_second(), modules="numpy")
    values = torch.as_tensor(second(GRID.numpy()), dtype=torch.float64) * torch.ones_like(GRID)
    assert values.abs().max().item() == pytest.approx(loss.curvature_bound, rel=1e-12)


def test_dpo_curvature_bound_is_attained_at_zero():
    second = get_loss("dpo").sympy_f_second()
    assert sympy.simplify(second.subs(Z, 0) - sympy.Rational(1, 4)) == 0


def test_slic_has_no_curvature_bound():
    loss = get_loss("slic")
    assert loss.curvature_bound is None
    assert loss.sympy_f_second().has(sympy.DiracDelta)


@pytest.mark.parametrize("name", NAMES)
def test_f_is_finite_for_large_margins(name):
    z = torch.tensor([-800.0, 800.0], dtype=torch.float64)
    assert bool(torch.isfinite(get_loss(name).f(z)).all())


# --- TRL 1.16 DPOTrainer -----------------------------------------------------

dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")


class _FakeAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(tensor):
        return tensor

    @staticmethod
    def gather_for_metrics(tensor):
        return tensor


def trl_loss(loss_type, beta, chosen_token_logps, rejected_token_logps, ref_chosen, ref_rejected):
    """Compute TRL's batch loss by running ``DPOTrainer._compute_loss`` itself.

    The model is replaced by a stub whose per-token log-probabilities are the
    given ones, so TRL's own code turns them into the loss. Token tensors
    have shape (B, T) with zeros after each completion; the completion of
    row i has as many tokens as its nonzero entries.
    """
    batch, length = chosen_token_logps.shape
    token_logps = torch.cat([chosen_token_logps, rejected_token_logps])  # (2B, T)
    completion = (token_logps != 0).long()
    # Sequence = one prompt token followed by the completion tokens.
    completion_mask = torch.cat([torch.zeros(2 * batch, 1, dtype=torch.long), completion], dim=1)
    inputs = {
        "input_ids": torch.ones(2 * batch, length + 1, dtype=torch.long),
        "attention_mask": torch.ones(2 * batch, length + 1, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }

    def model(**kwargs):
        assert kwargs["fused_lm_head"] is True
        zeros = torch.zeros_like(token_logps)
        return SimpleNamespace(
            log_probs=token_logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool(), aux_loss=None
        )

    model.training = True
    trainer = SimpleNamespace(
        model=model,
        accelerator=_FakeAccelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    return dpo_trainer.DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)


def _last_layer_pairs(batch=64, d=6, vocab=5, seed=0):
    """Single-token pairs from a last-layer softmax policy and its reference."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    s = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    weight_ref = torch.randn(vocab, d, generator=generator, dtype=torch.float64)
    weight = weight_ref + 3 * torch.randn(vocab, d, generator=generator, dtype=torch.float64)
    a, b = 2, 4
    winner = torch.where(s > 0, a, b)
    loser = torch.where(s > 0, b, a)
    logp = dynamics.log_policy(weight, x)  # (B, V)
    logp_ref = dynamics.log_policy(weight_ref, x)
    rows = torch.arange(batch)
    chosen, rejected = logp[rows, winner], logp[rows, loser]
    ref_chosen, ref_rejected = logp_ref[rows, winner], logp_ref[rows, loser]
    delta = (weight[a] - weight[b]) - (weight_ref[a] - weight_ref[b])
    return x, s, delta, chosen[:, None], rejected[:, None], ref_chosen, ref_rejected


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_trl_matches_book_loss_single_token(name, beta):
    x, s, delta, chosen, rejected, ref_chosen, ref_rejected = _last_layer_pairs()
    settings = trl_equivalent(name, beta)
    reference = trl_loss(settings.loss_type, settings.trl_beta, chosen, rejected, ref_chosen, ref_rejected)
    ours = dynamics.gpo_objective(delta, x, s, name, beta)
    torch.testing.assert_close(ours, settings.scale * reference, rtol=1e-10, atol=1e-10)


def test_trl_ipo_with_same_beta_differs():
    # The scale and the halved beta are needed: TRL's IPO target is 1/(2 beta).
    x, s, delta, chosen, rejected, ref_chosen, ref_rejected = _last_layer_pairs()
    beta = 0.5
    reference = trl_loss("ipo", beta, chosen, rejected, ref_chosen, ref_rejected)
    ours = dynamics.gpo_objective(delta, x, s, "ipo", beta)
    assert abs(ours.item() - reference.item()) > 1e-2


def test_trl_initial_losses():
    zeros = torch.zeros(4, dtype=torch.float64)
    logps = torch.full((4, 1), -1.5, dtype=torch.float64)
    beta = 0.1
    for name, expected in (("dpo", math.log(2.0)), ("slic", 1.0), ("ipo", 1.0)):
        settings = trl_equivalent(name, beta)
        reference = trl_loss(settings.loss_type, settings.trl_beta, logps, logps, zeros - 1.5, zeros - 1.5)
        assert settings.scale * reference.item() == pytest.approx(expected, rel=1e-12)


def test_trl_ipo_averages_log_ratios_per_token():
    generator = torch.Generator().manual_seed(3)
    batch, length, beta = 32, 5, 0.3
    lengths_c = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths_r = torch.randint(1, length + 1, (batch,), generator=generator)
    positions = torch.arange(length)
    chosen = -torch.rand(batch, length, generator=generator, dtype=torch.float64) - 0.1
    rejected = -torch.rand(batch, length, generator=generator, dtype=torch.float64) - 0.1
    chosen = chosen * (positions < lengths_c[:, None])
    rejected = rejected * (positions < lengths_r[:, None])
    ref_chosen = -3 * torch.rand(batch, generator=generator, dtype=torch.float64)
    ref_rejected = -3 * torch.rand(batch, generator=generator, dtype=torch.float64)

    settings = trl_equivalent("ipo", beta)
    reference = trl_loss("ipo", settings.trl_beta, chosen, rejected, ref_chosen, ref_rejected)
    h_avg = (chosen.sum(1) - ref_chosen) / lengths_c - (rejected.sum(1) - ref_rejected) / lengths_r
    h_sum = (chosen.sum(1) - ref_chosen) - (rejected.sum(1) - ref_rejected)
    ipo = get_loss("ipo")
    torch.testing.assert_close(ipo.f(beta * h_avg).mean(), settings.scale * reference, rtol=1e-10, atol=1e-12)
    assert abs(ipo.f(beta * h_sum).mean().item() - settings.scale * reference.item()) > 1e-3


def test_trl_equivalent_rejects_bad_beta():
    for beta in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="beta"):
            trl_equivalent("dpo", beta)


def test_trl_equivalent_rejects_unknown_loss():
    custom = GPOLoss(
        name="custom", f=torch.relu, f_prime=torch.sign, sympy_f=Z, f_prime_at_zero=0.0, curvature_bound=None
    )
    with pytest.raises(ValueError, match="no known TRL"):
        trl_equivalent(custom, 0.1)
