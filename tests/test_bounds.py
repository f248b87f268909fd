"""Tests of noisypo.bounds: the book's Theorem 3.3 / C.2 bounds and the symmetry identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisypo import bounds, dynamics, noise, risk, vmf

PHI = math.pi / 2


def _vmf_datasets(d, kappa, phi, n, trials, generator):
    """Return x (trials, 2n, d) with n samples per class and clean labels (trials, 2n)."""
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    x_plus = vmf.sample_vmf(mu_plus, kappa, trials * n, generator=generator).reshape(trials, n, d)
    x_minus = vmf.sample_vmf(mu_minus, kappa, trials * n, generator=generator).reshape(trials, n, d)
    x = torch.cat([x_plus, x_minus], dim=1)
    s = torch.cat([torch.ones(trials, n), -torch.ones(trials, n)], dim=1).double()
    return x, s, mu_plus, mu_minus


@pytest.mark.parametrize("d, kappa", [(3, 5.0), (16, 10.0), (64, 64.0), (256, 1024.0), (768, 200.0)])
def test_chernoff_bound_above_exact_probability(d, kappa):
    c = np.linspace(0.02, 1.0, 50)
    exact = risk.negative_side_probability(c, d, kappa)
    chernoff = bounds.negative_side_bound(c, d, kappa, exact=True)
    closed = bounds.negative_side_bound(c, d, kappa)
    assert np.all(exact <= chernoff)
    # The closed form integrates a lower bound on A_d, so it is looser still.
    assert np.all(chernoff <= closed * (1 + 1e-12))


def test_tail_exponent_positive_and_increasing():
    c = np.linspace(0.01, 1.0, 100)
    for gamma in (0.1, 1.0, 10.0):
        values = bounds.tail_exponent(gamma, c)
        assert np.all(values > 0)
        assert np.all(np.diff(values) > 0)
    # Large gamma: g -> gamma (1 - sqrt(1 - c^2)) to first order.
    leading = 1e4 * (1 - math.sqrt(1 - 0.3**2))
    assert bounds.tail_exponent(1e4, 0.3) / leading == pytest.approx(1.0, rel=1e-3)


def test_cone_bound_above_worst_cone_risk():
    d, kappa = 32, 40.0
    angles = np.linspace(0.0, 0.7, 8)
    worst = bounds.worst_cone_risk(angles, d, kappa, PHI)
    assert np.all(worst <= bounds.cone_risk_bound(angles, d, kappa, PHI, exact=True))
    assert worst[0] == pytest.approx(risk.bayes_risk(d, kappa, PHI), rel=1e-12)
    assert np.all(np.diff(worst) > 0)
    assert bounds.cone_risk_bound(PHI / 2, d, kappa, PHI) == 1.0


def test_angle_for_risk_inverts_cone_bound():
    d, kappa = 64, 256.0
    psi = bounds.angle_for_risk(1e-6, d, kappa, PHI)
    assert bounds.cone_risk_bound(psi, d, kappa, PHI) == pytest.approx(1e-6, rel=1e-8)
    # Below the bound at the Bayes direction itself no angle qualifies.
    assert bounds.cone_risk_bound(0.0, 3, 0.5, PHI) > 0.4
    assert bounds.angle_for_risk(0.4, 3, 0.5, PHI) == 0.0


def test_generalization_bound_holds_seeded():
    generator = torch.Generator().manual_seed(7)
    d, kappa, n, trials, delta = 64, 256.0, 200, 100, 0.1
    beta, lr, steps = 0.05, 1.0, 10
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, PHI, n, trials, generator)
    for epsilon in (0.0, 0.1, 0.2):
        noisy = noise.mislabel(s, epsilon, generator=generator)
        for loss in ("dpo", "ipo", "slic"):
            trained = dynamics.gradient_descent(x, noisy, loss, beta=beta, lr=lr, steps=steps)
            values = risk.population_risk(trained.delta, mu_plus, mu_minus, kappa)
            bound = bounds.generalization_bound(n, epsilon, d, kappa, PHI, delta, t=lr * steps, loss=loss, beta=beta)
            assert float(bound.risk) < 1.0
            assert np.mean(values > bound.risk) <= delta


def test_bound_pieces_hold_seeded():
    generator = torch.Generator().manual_seed(8)
    d, kappa, n, trials, delta, epsilon = 32, 64.0, 150, 100, 0.1, 0.15
    beta, lr, steps = 0.2, 0.5, 20
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, PHI, n, trials, generator)
    noisy = noise.mislabel(s, epsilon, generator=generator)
    trained = dynamics.gradient_descent(x, noisy, "dpo", beta=beta, lr=lr, steps=steps)
    m = (noisy[..., None] * x).mean(dim=1)  # (trials, d)
    bayes = (mu_plus - mu_minus) / (mu_plus - mu_minus).norm()
    angle_to_bayes = torch.arccos((trained.delta @ bayes) / trained.delta.norm(dim=-1)).numpy()
    bound = bounds.generalization_bound(n, epsilon, d, kappa, PHI, delta, t=lr * steps, loss="dpo", beta=beta)
    cosine_m = ((m @ bayes) / m.norm(dim=-1)).numpy()
    assert np.mean(cosine_m < bound.cosine) <= delta
    assert np.mean(angle_to_bayes > bound.angle) <= delta


def test_sample_size_threshold_is_smallest():
    d, kappa, delta, target = 64, 256.0, 0.1, 1e-6
    options = dict(t=10.0, loss="dpo", beta=0.1)
    sizes = []
    for epsilon in (0.0, 0.2, 0.3):
        n = bounds.sample_size_threshold(target, epsilon, d, kappa, PHI, delta, **options)
        at = bounds.generalization_bound(n, epsilon, d, kappa, PHI, delta, **options).risk
        before = bounds.generalization_bound(n - 1, epsilon, d, kappa, PHI, delta, **options).risk
        assert at <= target
        assert before > target
        sizes.append(n)
    assert sizes[0] < sizes[1] < sizes[2]
    # Growth against 1 / (1 - 2 epsilon)^2: within the factor that V adds.
    ratio = sizes[2] / sizes[0] * (1 - 2 * 0.3) ** 2
    assert 0.5 < ratio < 2.0


def test_sample_size_closed_form_reaches_cosine():
    from noisypo import bounds_b2

    d, kappa, delta, angle = 64, 256.0, 0.1, 0.3
    for epsilon in (0.0, 0.25, 0.45):
        n = math.ceil(float(bounds.sample_size_closed_form(epsilon, d, kappa, PHI, delta, angle)))
        at = bounds_b2.cosine_lower_bound(n, epsilon, d, kappa, PHI, delta)
        before = bounds_b2.cosine_lower_bound(n - 1, epsilon, d, kappa, PHI, delta)
        assert at >= math.cos(angle) - 1e-12
        assert before < math.cos(angle)


def test_sample_size_unreachable_raises():
    with pytest.raises(ValueError, match="no sample size"):
        bounds.sample_size_threshold(1e-6, 0.1, 64, 256.0, PHI, 0.1, t=1e4, loss="ipo", beta=1.0)
    with pytest.raises(ValueError, match="no sample size"):
        bounds.sample_size_threshold(1e-30, 0.1, 3, 0.5, PHI, 0.1, t=1.0, loss="dpo", beta=0.1)


def test_symmetry_identity_fixed_seed():
    # Antithetic masks: the mask at 1 - eps is the complement of the mask at
    # eps, so training on it negates Delta exactly and the risks add up to 1.
    generator = torch.Generator().manual_seed(12)
    d, kappa, n, trials = 8, 6.0, 10, 16
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, 1.0, n, trials, generator)
    epsilons = np.linspace(0.0, 1.0, 21)
    masks = noise.flip_mask(s.shape, epsilons, generator=generator, antithetic=True)  # (21, trials, N)
    noisy = torch.where(masks, -s, s)
    trained = dynamics.gradient_descent(x, noisy, ["dpo", "ipo", "slic"], beta=0.5, lr=0.5, steps=30)
    values = risk.population_risk(trained.delta, mu_plus, mu_minus, kappa)  # (3, 21, trials)
    mean_risk = values.mean(axis=-1)  # (3, 21)
    # Rates 0, 0.05, ..., 0.45 against 1, 0.95, ..., 0.55.
    low_delta, high_delta = trained.delta[:, :10], trained.delta[:, 11:].flip(1)
    assert torch.equal(high_delta, -low_delta)
    total = mean_risk[:, :10] + mean_risk[:, 11:][:, ::-1]
    assert np.max(np.abs(total - 1.0)) < 1e-12


def test_symmetry_at_one_half_paired():
    generator = torch.Generator().manual_seed(13)
    d, kappa, n, trials = 8, 6.0, 10, 16
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, 1.0, n, trials, generator)
    mask = noise.flip_mask(s.shape, 0.5, generator=generator)[0]
    pair = torch.stack([torch.where(mask, -s, s), torch.where(~mask, -s, s)])  # (2, trials, N)
    trained = dynamics.gradient_descent(x, pair, "dpo", beta=0.5, lr=0.5, steps=30)
    values = risk.population_risk(trained.delta, mu_plus, mu_minus, kappa)
    assert abs(values.mean() - 0.5) < 1e-12


def test_uncertain_signal_beats_random_flips():
    # Flips of uncertain labels sit near the boundary, so at the same noise
    # rate the radial signal is at least (1 - 2 epsilon) A_d(kappa) c.
    d, kappa = 16, 20.0
    c = math.sin(PHI / 2)
    resultant = float(vmf.mean_resultant_length(d, kappa))
    for omega in (0.5, 2.0, 10.0):
        epsilon = noise.uncertain_noise_rate(omega, d, kappa, PHI)
        assert bounds.uncertain_signal(omega, d, kappa, PHI) > (1 - 2 * epsilon) * resultant * c


def test_uncertain_signal_matches_monte_carlo():
    generator = torch.Generator().manual_seed(21)
    d, kappa, omega = 16, 20.0, 3.0
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, PHI, 50_000, 1, generator)
    reward = noise.vmf_log_odds(x[0], mu_plus, mu_minus, kappa)
    labels = noise.uncertain_labels(reward, omega, generator=generator)
    bayes = (mu_plus - mu_minus) / (mu_plus - mu_minus).norm()
    values = labels * (x[0] @ bayes)
    estimate, error = values.mean().item(), values.std().item() / math.sqrt(values.numel())
    assert abs(float(bounds.uncertain_signal(omega, d, kappa, PHI)) - estimate) < 3 * error


def test_uncertain_bound_holds_seeded():
    generator = torch.Generator().manual_seed(22)
    d, kappa, n, trials, delta, omega = 64, 256.0, 100, 100, 0.1, 20.0
    beta, lr, steps = 0.1, 1.0, 10
    x, s, mu_plus, mu_minus = _vmf_datasets(d, kappa, PHI, n, trials, generator)
    reward = noise.vmf_log_odds(x, mu_plus, mu_minus, kappa)
    labels = noise.uncertain_labels(reward, omega, generator=generator)
    trained = dynamics.gradient_descent(x, labels, "dpo", beta=beta, lr=lr, steps=steps)
    values = risk.population_risk(trained.delta, mu_plus, mu_minus, kappa)
    bound = bounds.uncertain_generalization_bound(n, omega, d, kappa, PHI, delta, t=lr * steps, loss="dpo", beta=beta)
    assert float(bound.risk) < 1.0
    assert np.mean(values > bound.risk) <= delta
    size = bounds.uncertain_sample_size_threshold(1e-6, omega, d, kappa, PHI, delta, t=lr * steps, loss="dpo", beta=beta)
    at = bounds.uncertain_generalization_bound(size, omega, d, kappa, PHI, delta, t=lr * steps, loss="dpo", beta=beta)
    assert float(at.risk) <= 1e-6


@pytest.mark.parametrize(
    "call",
    [
        lambda: bounds.tail_exponent(-1.0, 0.5),
        lambda: bounds.tail_exponent(1.0, 0.0),
        lambda: bounds.negative_side_bound(0.5, 2, 1.0),
        lambda: bounds.negative_side_bound(0.5, 8, 0.0),
        lambda: bounds.cone_risk_bound(-0.1, 8, 1.0, PHI),
        lambda: bounds.cone_risk_bound(0.1, 8, 1.0, 4.0),
        lambda: bounds.generalization_bound(10, 0.6, 8, 1.0, PHI, 0.1, t=1.0, loss="dpo", beta=0.1),
        lambda: bounds.generalization_bound(10, 0.1, 8, 1.0, PHI, 1.5, t=1.0, loss="dpo", beta=0.1),
        lambda: bounds.generalization_bound(10, 0.1, 8, 1.0, PHI, 0.1, t=1.0, loss="hinge2", beta=0.1),
        lambda: bounds.sample_size_threshold(2.0, 0.1, 8, 1.0, PHI, 0.1, t=1.0, loss="dpo", beta=0.1),
        lambda: bounds.sample_size_closed_form(0.5, 8, 1.0, PHI, 0.1, 0.3),
        lambda: bounds.uncertain_signal(-1.0, 8, 1.0, PHI),
        lambda: bounds.uncertain_cosine_lower_bound(0, 1.0, 8, 1.0, PHI, 0.1),
    ],
)
def test_invalid_input_raises(call):
    with pytest.raises(ValueError):
        call()
