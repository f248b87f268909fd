"""Tests of the boundary-motion bound (the book's Lemma B.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisypo import bounds_motion, dynamics, losses, vmf

BETA, TAU = 1.0, 1.0


def _vmf_problem(seed: int, *, trials: int = 3, n: int = 40, d: int = 16, kappa: float = 16.0):
    """Return embeddings (trials, 2n, d) and clean labels (trials, 2n) from two vMF classes."""
    generator = torch.Generator().manual_seed(seed)
    mu_plus, mu_minus = vmf.two_class_means(d, np.pi / 3)
    means = torch.stack([mu_plus, mu_minus]).expand(trials, 2, d)
    x = vmf.sample_vmf(means, kappa, n, generator=generator).reshape(trials, 2 * n, d)
    labels = torch.cat([torch.ones(n), -torch.ones(n)]).double().expand(trials, 2 * n).clone()
    flips = torch.rand(trials, 2 * n, generator=generator, dtype=torch.float64) < 0.2
    labels[flips] *= -1
    return x, labels


def _gaussian_problem(seed: int, *, n_rows: int = 30, d: int = 8):
    """Return unit embeddings (n_rows, d) and random labels: data with no structure."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, d, generator=generator, dtype=torch.float64)
    x = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    labels = torch.where(torch.rand(n_rows, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return x, labels.double()


def _angles(x, labels, name, *, lr, steps):
    result = dynamics.gradient_descent(x, labels, name, beta=BETA, lr=lr, steps=steps, record_every=1)
    m = bounds_motion.label_weighted_mean(x, labels)
    angles = bounds_motion.angle_between(result.trajectory[..., 1:, :], m.unsqueeze(-2)).numpy()
    times = result.record_steps[1:].double().numpy() * lr * TAU
    return angles, times, m


# --- The bound holds in simulations -------------------------------------------


@pytest.mark.parametrize("name", ["dpo", "ipo"])
@pytest.mark.parametrize("seed", [0, 1])
def test_angle_bound_holds_vmf(name, seed):
    x, labels = _vmf_problem(seed)
    angles, times, m = _angles(x, labels, name, lr=0.01, steps=600)
    constants = bounds_motion.loss_constants(name)
    lam = bounds_motion.second_moment_max_eigenvalue(x).numpy()[:, None]
    m_norm = torch.linalg.vector_norm(m, dim=-1).numpy()[:, None]
    extra = {}
    if constants.derivative_bound is not None:
        extra = dict(m_norm=m_norm, slope_at_zero=constants.slope_at_zero, derivative_bound=constants.derivative_bound)
    bound = bounds_motion.angle_bound(
        times, beta=BETA, tau=TAU, curvature_bound=constants.curvature_bound, lambda_max=lam, **extra
    )
    informative = bound < np.pi
    assert informative.sum() > 100  # the check covers a real time range
    assert np.all(angles[informative] <= bound[informative])


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_angle_bound_holds_unstructured(name):
    # Random labels on random directions: the first direction is pure noise.
    x, labels = _gaussian_problem(3)
    angles, times, m = _angles(x, labels, name, lr=0.005, steps=800)
    constants = bounds_motion.loss_constants(name)
    bound = bounds_motion.angle_bound(
        times,
        beta=BETA,
        tau=TAU,
        curvature_bound=constants.curvature_bound,
        lambda_max=float(bounds_motion.second_moment_max_eigenvalue(x)),
    )
    informative = bound < np.pi
    assert informative.sum() > 100
    assert np.all(angles[informative] <= bound[informative])


# --- SLiC: exact invariance until the first margin reaches 1 -----------------


def test_slic_direction_fixed_before_crossing():
    x, labels = _vmf_problem(5, trials=2)
    lr, steps = 0.01, 800
    angles, times, m = _angles(x, labels, "slic", lr=lr, steps=steps)
    crossing = bounds_motion.hinge_first_crossing_time(x, labels, beta=BETA, tau=TAU).numpy()
    before = times[None, :] < crossing[:, None]
    # Each step adds the same vector, so the angle is a sum of per-step roundings:
    # at most about one machine epsilon per step.
    assert np.max(angles[before]) < steps * np.finfo(np.float64).eps
    # After the crossing the direction does change, so the check above can fail.
    assert np.max(angles[~before]) > 1e-6


def test_slic_crossing_time_matches_gradient_descent():
    x, labels = _vmf_problem(6, trials=3)
    lr, steps = 0.01, 800
    result = dynamics.gradient_descent(x, labels, "slic", beta=BETA, lr=lr, steps=steps, record_every=1)
    margins = dynamics.margins(result.trajectory, x.unsqueeze(-3), labels.unsqueeze(-2), BETA)  # (trials, T, N)
    reached = (margins >= 1).any(dim=-1).numpy()
    first = reached.argmax(-1) * lr * TAU
    crossing = bounds_motion.hinge_first_crossing_time(x, labels, beta=BETA, tau=TAU).numpy()
    assert np.all(reached.any(-1))
    assert np.all(first >= crossing - 1e-12)
    assert np.all(first < crossing + lr * TAU + 1e-12)


def test_slic_crossing_above_lower_bound():
    x, labels = _vmf_problem(7, trials=8)
    crossing = bounds_motion.hinge_first_crossing_time(x, labels, beta=BETA, tau=TAU).numpy()
    m_norm = torch.linalg.vector_norm(bounds_motion.label_weighted_mean(x, labels), dim=-1).numpy()
    lower = bounds_motion.hinge_crossing_time_lower_bound(m_norm, beta=BETA, tau=TAU)
    assert np.all(crossing >= lower)


# --- The pieces of the bound --------------------------------------------------


def test_gronwall_ratio_series_and_closed_form_agree():
    times = np.array([1e-9, 1e-6, 1e-5, 2e-4, 1e-2, 1.0])
    ratio = bounds_motion.gronwall_ratio(times, beta=1.0, tau=1.0, curvature_bound=0.5, lambda_max=1.0)
    u = times  # k = 2 * 1 * 0.5 * 1 / 1
    expected = np.array([float((np.expm1(np.longdouble(v)) - v) / v) for v in u])
    expected[:3] = u[:3] / 2 + u[:3] ** 2 / 6
    np.testing.assert_allclose(ratio, expected, rtol=1e-9)


def test_gronwall_ratio_zero_at_time_zero():
    assert bounds_motion.gronwall_ratio(0.0, beta=1.0, tau=1.0, curvature_bound=2.0, lambda_max=0.3) == 0.0


def test_gronwall_stable_time_solves_ratio():
    angles = np.array([1e-4, 0.02, 0.3, 1.0, np.pi / 2])
    times = bounds_motion.gronwall_stable_time(angles, beta=0.7, tau=2.0, curvature_bound=0.25, lambda_max=0.4)
    ratio = bounds_motion.gronwall_ratio(times, beta=0.7, tau=2.0, curvature_bound=0.25, lambda_max=0.4)
    np.testing.assert_allclose(ratio, np.sin(angles), rtol=1e-10)


def test_gronwall_stable_time_small_angle_limit():
    angle = 1e-6
    time = bounds_motion.gronwall_stable_time(angle, beta=1.0, tau=1.0, curvature_bound=2.0, lambda_max=0.5)
    assert time == pytest.approx(np.sin(angle) / (2.0 * 0.5), rel=1e-5)


def test_linear_growth_stable_time_formula():
    time = bounds_motion.linear_growth_stable_time(
        0.1, beta=2.0, tau=3.0, curvature_bound=0.25, lambda_max=0.5, m_norm=0.2, slope_at_zero=0.5,
        derivative_bound=1.0,
    )
    assert time == pytest.approx(0.5 * 3.0 * 0.2 * np.sin(0.1) / (4.0 * 0.25 * 1.0 * 0.5))


def test_stable_time_is_larger_of_two():
    common = dict(beta=1.0, tau=1.0, curvature_bound=0.25, lambda_max=0.3, slope_at_zero=0.5, derivative_bound=1.0)
    for m_norm in (0.05, 50.0):
        total = bounds_motion.stable_time(0.05, m_norm=m_norm, **common)
        gronwall = bounds_motion.gronwall_stable_time(
            0.05, beta=1.0, tau=1.0, curvature_bound=0.25, lambda_max=0.3
        )
        linear = bounds_motion.linear_growth_stable_time(0.05, m_norm=m_norm, **common)
        assert total == pytest.approx(max(gronwall, linear))


def test_angle_bound_at_stable_time_equals_angle():
    time = bounds_motion.stable_time(0.2, beta=1.0, curvature_bound=2.0, lambda_max=0.6)
    bound = bounds_motion.angle_bound(time, beta=1.0, curvature_bound=2.0, lambda_max=0.6)
    assert bound == pytest.approx(0.2, rel=1e-9)


def test_angle_bound_uninformative_returns_pi():
    assert bounds_motion.angle_bound(100.0, beta=1.0, curvature_bound=2.0) == np.pi


def test_first_order_rate_matches_early_ipo_flow():
    x, labels = _gaussian_problem(8, n_rows=40, d=6)
    rate = float(bounds_motion.first_order_angle_rate(x, labels, beta=1.0, tau=1.0, f_second_at_zero=2.0))
    t = np.array([1e-4])
    exact = dynamics.ipo_closed_form(x, labels, t, beta=1.0, tau=1.0)
    angle = bounds_motion.angle_between(exact.delta, bounds_motion.label_weighted_mean(x, labels).numpy())
    assert float(angle[0]) / t[0] == pytest.approx(rate, rel=1e-3)


def test_loss_constants_match_losses():
    for name in ("dpo", "ipo", "slic"):
        loss = losses.get_loss(name)
        constants = bounds_motion.loss_constants(name)
        assert constants.slope_at_zero == -loss.f_prime_at_zero
        assert constants.curvature_bound == loss.curvature_bound


@pytest.mark.parametrize("name", ["dpo", "slic"])
def test_derivative_bound_holds_on_grid(name):
    z = torch.linspace(-60.0, 60.0, 20001, dtype=torch.float64)
    slope = losses.get_loss(name).f_prime(z).abs()
    bound = bounds_motion.loss_constants(name).derivative_bound
    assert float(slope.max()) <= bound
    assert float(slope.max()) > 0.999 * bound  # the bound is attained or approached


def test_expected_m_norm_against_monte_carlo():
    d, kappa, phi, n, epsilon = 8, 10.0, np.pi / 2, 20, 0.25
    trials = 4000
    generator = torch.Generator().manual_seed(9)
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    means = torch.stack([mu_plus, mu_minus]).expand(trials, 2, d)
    x = vmf.sample_vmf(means, kappa, n, generator=generator).reshape(trials, 2 * n, d)
    labels = torch.cat([torch.ones(n), -torch.ones(n)]).double().expand(trials, 2 * n)
    flips = torch.rand(trials, 2 * n, generator=generator, dtype=torch.float64) < epsilon
    labels = torch.where(flips, -labels, labels)
    squared = (torch.linalg.vector_norm(bounds_motion.label_weighted_mean(x, labels), dim=-1) ** 2).numpy()
    expected = bounds_motion.expected_m_norm(d, kappa, phi, n, epsilon) ** 2
    standard_error = squared.std(ddof=1) / np.sqrt(trials)
    assert abs(squared.mean() - expected) < 4 * standard_error


def test_angle_between_precise_near_zero():
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([1.0, 1e-12, 0.0])
    assert bounds_motion.angle_between(u, v) == pytest.approx(1e-12, rel=1e-6)
    assert float(bounds_motion.angle_between(torch.tensor(u), torch.tensor(v))) == pytest.approx(1e-12, rel=1e-6)


def test_angle_between_opposite_vectors():
    assert bounds_motion.angle_between([1.0, 0.0], [-2.0, 0.0]) == pytest.approx(np.pi)


def test_max_eigenvalue_matches_eigh():
    x, _ = _vmf_problem(10, trials=2)
    second = x.transpose(-1, -2) @ x / x.shape[-2]
    expected = torch.linalg.eigvalsh(second)[..., -1]
    torch.testing.assert_close(bounds_motion.second_moment_max_eigenvalue(x), expected)


# --- Invalid input ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(beta=0.0, curvature_bound=0.25),
        dict(beta=-1.0, curvature_bound=0.25),
        dict(beta=1.0, tau=0.0, curvature_bound=0.25),
        dict(beta=1.0, curvature_bound=0.0),
        dict(beta=1.0, curvature_bound=0.25, lambda_max=-0.1),
        dict(beta=1.0, curvature_bound=0.25, lambda_max=np.nan),
    ],
)
def test_angle_bound_rejects_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        bounds_motion.angle_bound(1.0, **kwargs)


@pytest.mark.parametrize("t", [-1.0, [0.5, -0.1], np.nan])
def test_angle_bound_rejects_invalid_time(t):
    with pytest.raises(ValueError, match="invalid time"):
        bounds_motion.angle_bound(t, beta=1.0, curvature_bound=0.25)


def test_angle_bound_rejects_partial_linear_arguments():
    with pytest.raises(ValueError, match="give all of"):
        bounds_motion.angle_bound(1.0, beta=1.0, curvature_bound=0.25, m_norm=0.3)


@pytest.mark.parametrize("angle", [0.0, -0.1, 2.0, np.nan])
def test_stable_time_rejects_invalid_angle(angle):
    with pytest.raises(ValueError, match="invalid angle"):
        bounds_motion.stable_time(angle, beta=1.0, curvature_bound=0.25)


def test_linear_growth_rejects_zero_m_norm():
    with pytest.raises(ValueError, match="m_norm"):
        bounds_motion.linear_growth_ratio(
            1.0, beta=1.0, tau=1.0, curvature_bound=0.25, lambda_max=1.0, m_norm=0.0, slope_at_zero=0.5,
            derivative_bound=1.0,
        )


def test_hinge_crossing_rejects_invalid_beta():
    x, labels = _gaussian_problem(11)
    with pytest.raises(ValueError, match="beta"):
        bounds_motion.hinge_first_crossing_time(x, labels, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        bounds_motion.hinge_crossing_time_lower_bound(0.3, beta=-1.0)


def test_loss_constants_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown loss"):
        bounds_motion.loss_constants("kto")


def test_label_weighted_mean_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="invalid shapes"):
        bounds_motion.label_weighted_mean(torch.zeros(5, 3), torch.ones(4))
    with pytest.raises(ValueError, match="do not broadcast"):
        bounds_motion.label_weighted_mean(torch.zeros(2, 5, 3), torch.ones(3, 5))


def test_angle_between_rejects_zero_vector():
    with pytest.raises(ValueError, match="zero norm"):
        bounds_motion.angle_between([0.0, 0.0], [1.0, 0.0])


@pytest.mark.parametrize(
    "args",
    [(1, 10.0, 1.0, 10, 0.1), (8, -1.0, 1.0, 10, 0.1), (8, 10.0, 0.0, 10, 0.1), (8, 10.0, 1.0, 0, 0.1), (8, 10.0, 1.0, 10, 1.5)],
)
def test_expected_m_norm_rejects_invalid_input(args):
    with pytest.raises(ValueError, match="invalid"):
        bounds_motion.expected_m_norm(*args)
