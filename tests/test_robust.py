"""Tests of the noise-robust losses (cDPO, rDPO, ROPO) and their TRL counterparts."""

from __future__ import annotations

import math
import warnings

import pytest
import sympy
import torch

from noisypo import dynamics
from noisypo.losses import Z, get_loss
from noisypo.robust import (
    FlipRateWarning,
    conservative_dpo,
    flip_average,
    make_loss,
    robust_dpo,
    ropo,
    trl_pair_losses,
)

BETA = 0.1
H = torch.linspace(-60.0, 60.0, 25, dtype=torch.float64)
GRID = torch.linspace(-30.0, 30.0, 6001, dtype=torch.float64)


def robust_losses():
    return [conservative_dpo(0.2), robust_dpo(0.2), robust_dpo(0.35), ropo(0.5), ropo(2.0), ropo(14.0)]


# --- agreement with TRL 1.16 ---------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3, 0.45])
def test_rdpo_matches_trl_robust(epsilon):
    reference = trl_pair_losses("robust", H, beta=BETA, label_smoothing=epsilon)
    ours = robust_dpo(epsilon).f(BETA * H)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)


def test_trl_sigmoid_ignores_label_smoothing():
    smoothed = trl_pair_losses("sigmoid", H, beta=BETA, label_smoothing=0.3)
    torch.testing.assert_close(smoothed, get_loss("dpo").f(BETA * H), rtol=0, atol=1e-12)
    gap = (smoothed - conservative_dpo(0.3).f(BETA * H)).abs().max()
    assert gap > 0.1


def test_cdpo_matches_explicit_trl_mixture():
    epsilon = 0.3
    mixture = (1 - epsilon) * trl_pair_losses("sigmoid", H, beta=BETA) + epsilon * trl_pair_losses(
        "sigmoid", -H, beta=BETA
    )
    torch.testing.assert_close(conservative_dpo(epsilon).f(BETA * H), mixture, rtol=0, atol=1e-12)


def test_cdpo_matches_trl_aot_unpaired_batch_of_one():
    # With one pair per batch TRL's sorting is the identity, and "aot_unpaired"
    # is label-smoothed DPO.
    reference = trl_pair_losses("aot_unpaired", H, beta=BETA, label_smoothing=0.2)
    torch.testing.assert_close(conservative_dpo(0.2).f(BETA * H), reference, rtol=0, atol=1e-12)


def test_trl_loss_type_fields():
    assert robust_dpo(0.1).trl_loss_type == "robust"
    assert conservative_dpo(0.1).trl_loss_type is None
    assert ropo(2.0).trl_loss_type is None


# --- the loss functions themselves --------------------------------------------


@pytest.mark.parametrize("loss", robust_losses(), ids=lambda loss: f"{loss.name}{dict(loss.params)}")
def test_f_prime_matches_autograd(loss):
    z = GRID.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.f(z).sum(), z)
    torch.testing.assert_close(loss.f_prime(GRID), grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss", robust_losses(), ids=lambda loss: f"{loss.name}{dict(loss.params)}")
def test_f_prime_at_zero_matches_sympy(loss):
    symbolic = float(sympy.diff(loss.sympy_f, Z).subs(Z, 0))
    assert loss.f_prime_at_zero == pytest.approx(symbolic, abs=1e-12)
    assert loss.f_prime(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(symbolic, abs=1e-12)


@pytest.mark.parametrize("loss", robust_losses(), ids=lambda loss: f"{loss.name}{dict(loss.params)}")
def test_sympy_f_matches_torch_f(loss):
    points = [-7.5, -1.0, 0.0, 0.3, 4.0]
    function = sympy.lambdify(Z, loss.sympy_f, "mpmath")
    symbolic = torch.tensor([float(function(p)) for p in points], dtype=torch.float64)
    torch.testing.assert_close(loss.f(torch.tensor(points, dtype=torch.float64)), symbolic, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", robust_losses(), ids=lambda loss: f"{loss.name}{dict(loss.params)}")
def test_curvature_bound_is_sup_of_second_derivative(loss):
    z = GRID.clone().requires_grad_(True)
    (first,) = torch.autograd.grad(loss.f(z).sum(), z, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), z)
    largest = second.abs().max().item()
    assert largest <= loss.curvature_bound + 1e-12
    assert largest == pytest.approx(loss.curvature_bound, rel=1e-5)


def test_zero_flip_rate_gives_dpo():
    dpo = get_loss("dpo")
    for loss in (conservative_dpo(0.0), robust_dpo(0.0)):
        torch.testing.assert_close(loss.f(GRID), dpo.f(GRID), rtol=0, atol=1e-12)


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 0.4])
def test_rdpo_is_unbiased_under_flips(epsilon):
    averaged = flip_average(robust_dpo(epsilon), epsilon)
    torch.testing.assert_close(averaged.f(GRID), get_loss("dpo").f(GRID), rtol=0, atol=1e-10)
    assert averaged.f_prime_at_zero == pytest.approx(-0.5)


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 0.4])
def test_cdpo_is_flip_average_of_dpo(epsilon):
    torch.testing.assert_close(
        conservative_dpo(epsilon).f(GRID), flip_average("dpo", epsilon).f(GRID), rtol=0, atol=1e-12
    )


def test_cdpo_minimiser_is_log_odds():
    epsilon = 0.15
    z_star = torch.tensor([math.log((1 - epsilon) / epsilon)], dtype=torch.float64)
    assert conservative_dpo(epsilon).f_prime(z_star).abs().item() < 1e-14


def test_rdpo_above_half_is_reversed_rdpo():
    with pytest.warns(FlipRateWarning):
        high = robust_dpo(0.7)
    torch.testing.assert_close(high.f(GRID), robust_dpo(0.3).f(-GRID), rtol=0, atol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 3.0, 14.0])
def test_ropo_largest_gradient_weight_is_one(alpha):
    weight = -ropo(alpha).f_prime(torch.linspace(-40.0, 40.0, 400001, dtype=torch.float64))
    assert weight.max().item() == pytest.approx(1.0, abs=1e-6)


def test_ropo_damps_confidently_wrong_pairs():
    z = torch.tensor([-20.0], dtype=torch.float64)
    floor = 4 * 14.0 / 15.0**2
    assert -ropo(14.0).f_prime(z).item() == pytest.approx(floor, rel=1e-6)
    assert -get_loss("dpo").f_prime(z).item() > 0.99


# --- validation ----------------------------------------------------------------


def test_cdpo_warns_at_half():
    with pytest.warns(FlipRateWarning, match="nothing is learned"):
        loss = conservative_dpo(0.5)
    assert loss.f_prime_at_zero == 0.0


def test_rdpo_rejects_half():
    with pytest.raises(ValueError, match="1 - 2 epsilon = 0"):
        robust_dpo(0.5)


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, float("nan")])
def test_flip_rate_out_of_range(epsilon):
    with pytest.raises(ValueError, match="invalid epsilon"):
        robust_dpo(epsilon)
    with pytest.raises(ValueError, match="invalid epsilon"):
        conservative_dpo(epsilon)


def test_no_warning_below_half():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conservative_dpo(0.49)
        robust_dpo(0.49)


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("inf")])
def test_ropo_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="invalid alpha"):
        ropo(alpha)


def test_make_loss_builds_and_validates():
    assert make_loss("RDPO", epsilon=0.1).params["epsilon"] == 0.1
    assert make_loss("dpo") is get_loss("dpo")
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("kto")
    with pytest.raises(ValueError, match="needs exactly the keyword 'alpha'"):
        make_loss("ropo", epsilon=0.1)
    with pytest.raises(ValueError, match="takes no parameters"):
        make_loss("ipo", epsilon=0.1)


# --- use in the dynamics ---------------------------------------------------------


def test_first_step_direction_is_shared():
    generator = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(40, 8, generator=generator, dtype=torch.float64), dim=-1)
    s = torch.where(torch.rand(40, generator=generator) < 0.5, 1.0, -1.0).to(torch.float64)
    losses = [get_loss("dpo"), get_loss("ipo"), get_loss("slic"), *robust_losses()]
    result = dynamics.gradient_descent(x, s, losses, beta=BETA, lr=0.5, steps=1)
    m = (s[:, None] * x).mean(dim=0)
    for loss, delta in zip(losses, result.delta):
        cosine = torch.nn.functional.cosine_similarity(delta, m, dim=0).item()
        assert cosine == pytest.approx(1.0, abs=1e-12), loss.name
        expected_norm = 2 * 0.5 * BETA * abs(loss.f_prime_at_zero) * m.norm().item()
        assert delta.norm().item() == pytest.approx(expected_norm, rel=1e-10), loss.name


# --- the experiment runners ----------------------------------------------------------


def test_controlled_runs_share_first_boundary():
    from noisypo.experiments import controlled
    from noisypo.experiments.robust import capped, controlled_runs

    config = controlled.ControlledConfig(
        d=8, kappas=(20.0,), phi=1.0, ns=(20,), epsilons=(0.0, 0.2, 0.4), trials=3, test_samples=2, dtype="float64"
    )
    fixed = ropo(4.0)
    builders = {
        "dpo": lambda e: get_loss("dpo"),
        "rdpo": lambda e: robust_dpo(capped(e)),
        "ropo": lambda e: fixed,
    }
    frame = controlled_runs(config, 20.0, builders, horizons=[1, 5])
    assert len(frame) == 3 * 3 * 2 * 3
    first_step = frame[frame["steps"] == 1]
    assert first_step["cosine_to_dpo"].min() == pytest.approx(1.0, abs=1e-12)
    assert first_step["cosine_to_first"].min() == pytest.approx(1.0, abs=1e-12)
    assert frame["accuracy"].between(0, 1).all()


def test_fixed_backbone_runs_report_first_boundary():
    from noisypo.experiments.robust import fixed_backbone_runs

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(60, 12, generator=generator, dtype=torch.float64) + 3.0  # shared offset
    labels = torch.where(torch.arange(60) < 30, 1, -1).numpy()
    x[labels == 1, 0] += 1.0
    builders = {"dpo": lambda e: get_loss("dpo"), "cdpo": lambda e: conservative_dpo(min(e, 0.45))}
    frame = fixed_backbone_runs(x.numpy(), labels, builders, [0.0, 0.3], horizons=[2], splits=2, center=True)
    assert set(frame["loss"]) == {"m", "dpo", "cdpo"}
    assert (frame.loc[frame["loss"] == "m", "steps"] == 0).all()
    assert len(frame) == 2 * 2 * 3
    with pytest.raises(ValueError, match="invalid horizons"):
        fixed_backbone_runs(x.numpy(), labels, builders, [0.0], horizons=[0])
