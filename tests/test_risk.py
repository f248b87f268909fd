"""Tests of noisypo.risk: exact half-space probabilities and population risks."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from noisypo import risk, vmf


def _mpmath_probability(c: float, d: int, kappa: float) -> float:
    """P(u . x < 0) by mpmath quadrature over the polar angle (moderate kappa only)."""
    mpmath.mp.dps = 25
    c = mpmath.mpf(c)
    half = mpmath.mpf(d - 2) / 2
    sin_alpha = mpmath.sqrt(1 - c * c)

    def density(theta):
        return mpmath.exp(kappa * (mpmath.cos(theta) - 1)) * mpmath.sin(theta) ** (d - 2)

    def conditional(theta):
        z = (1 - c * mpmath.cos(theta) / (sin_alpha * mpmath.sin(theta))) / 2
        if z <= 0:
            return mpmath.mpf(0)
        if z >= 1:
            return mpmath.mpf(1)
        return mpmath.betainc(half, half, 0, z, regularized=True)

    alpha = mpmath.acos(c)
    points = sorted({mpmath.mpf(0), abs(mpmath.pi / 2 - alpha), mpmath.pi / 2 + alpha, mpmath.pi})
    numerator = mpmath.quad(lambda t: conditional(t) * density(t), points)
    denominator = mpmath.quad(density, [0, mpmath.pi])
    return float(numerator / denominator)


def _scipy_probability(c: float, d: int, kappa: float) -> float:
    """P(u . x < 0) by adaptive SciPy quadrature with break points around the mode."""
    mode = risk._angle_mode(d, kappa)
    half = 0.5 * (d - 2)

    def log_density(theta):
        return kappa * (math.cos(theta) - math.cos(mode)) + (d - 2) * (
            math.log(math.sin(theta)) - math.log(math.sin(mode))
        )

    def conditional(theta):
        z = 0.5 * (1.0 - c * math.cos(theta) / (math.sqrt(1.0 - c * c) * math.sin(theta)))
        return special.betainc(half, half, min(max(z, 0.0), 1.0))

    points = [mode + 0.01 * k for k in range(-40, 41) if 0.0 < mode + 0.01 * k < math.pi]
    options = dict(points=points, limit=2000, epsabs=0.0, epsrel=1e-13)
    numerator = integrate.quad(lambda t: conditional(t) * math.exp(log_density(t)), 1e-12, math.pi - 1e-12, **options)[0]
    denominator = integrate.quad(lambda t: math.exp(log_density(t)), 1e-12, math.pi - 1e-12, **options)[0]
    return numerator / denominator


@pytest.mark.parametrize("d, kappa", [(3, 0.5), (3, 20.0), (4, 5.0), (8, 3.0), (16, 10.0)])
def test_probability_matches_mpmath(d, kappa):
    cosines = [0.05, 0.4, 0.9]
    values = risk.negative_side_probability(cosines, d, kappa)
    for c, value in zip(cosines, values):
        assert value == pytest.approx(_mpmath_probability(c, d, kappa), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("d, kappa", [(64, 640.0), (768, 200.0), (768, 5000.0)])
def test_probability_matches_scipy_when_concentrated(d, kappa):
    cosines = [0.01, 0.05, 0.3]
    values = risk.negative_side_probability(cosines, d, kappa)
    for c, value in zip(cosines, values):
        assert abs(value - _scipy_probability(c, d, kappa)) < 1e-12


def test_probability_closed_form_d3():
    # For d = 3, w has density proportional to exp(kappa w) on [-1, 1], so
    # P(w < 0) = 1 / (e^kappa + 1).
    for kappa in (0.1, 2.0, 30.0):
        value = risk.negative_side_probability(1.0, 3, kappa)
        assert value == pytest.approx(1.0 / (math.exp(kappa) + 1.0), rel=1e-12)


def test_probability_closed_form_circle():
    # On the circle x = (cos a, sin a) with a ~ von Mises(0, kappa); with
    # u at angle alpha from mu, u . x < 0 iff a lies in the half circle
    # (alpha + pi/2, alpha + 3 pi/2).
    kappa = 3.0
    for c in (0.0, 0.3, 0.8, -0.6):
        alpha = math.acos(c)
        law = stats.vonmises(kappa)
        low, high = alpha + 0.5 * math.pi, alpha + 1.5 * math.pi
        expected = law.cdf(high - 2 * math.pi) + (1.0 - law.cdf(low)) if high > math.pi else law.cdf(high) - law.cdf(low)
        assert risk.negative_side_probability(c, 2, kappa) == pytest.approx(expected, abs=1e-12)


def test_probability_reflection_and_half():
    c = np.linspace(-1.0, 1.0, 41)
    values = risk.negative_side_probability(c, 32, 40.0)
    assert np.max(np.abs(values + values[::-1] - 1.0)) < 1e-15
    assert risk.negative_side_probability(0.0, 32, 40.0) == pytest.approx(0.5, abs=1e-15)
    assert np.all(np.diff(values) < 0.0)


def test_probability_uniform_sphere():
    # kappa = 0: every half-space through the origin has probability 1/2.
    values = risk.negative_side_probability([0.9, 0.2, -0.4], 10, 0.0)
    assert np.allclose(values, 0.5, atol=1e-15)


def test_threshold_matches_w_cdf():
    # With c = 1 the half-space u . x < b is w < b.
    d, kappa = 12, 7.0
    for b in (-0.5, 0.0, 0.3, 0.9):
        value = risk.negative_side_probability(1.0, d, kappa, threshold=b)
        assert value == pytest.approx(float(vmf.w_cdf(b, d, kappa)), abs=1e-10)


def test_threshold_matches_monte_carlo():
    generator = torch.Generator().manual_seed(11)
    d, kappa, c, b = 8, 6.0, 0.6, 0.25
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0] = 1.0
    u = torch.zeros(d, dtype=torch.float64)
    u[0], u[1] = c, math.sqrt(1 - c * c)
    x = vmf.sample_vmf(mu, kappa, 200_000, generator=generator)
    hits = (x @ u < b).double()
    estimate, error = hits.mean().item(), hits.std().item() / math.sqrt(hits.numel())
    value = float(risk.negative_side_probability(c, d, kappa, threshold=b))
    assert abs(value - estimate) < 3 * error


def test_population_risk_matches_monte_carlo():
    generator = torch.Generator().manual_seed(0)
    d, kappa, phi, prior = 16, 12.0, 1.2, 0.3
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    delta = torch.randn(5, d, generator=generator, dtype=torch.float64) + 3.0 * (mu_plus - mu_minus)
    exact = risk.population_risk(delta, mu_plus, mu_minus, kappa, prior=prior)

    samples = 100_000
    labels_plus = torch.rand(samples, generator=generator) < prior  # (samples,)
    x_plus = vmf.sample_vmf(mu_plus, kappa, samples, generator=generator)
    x_minus = vmf.sample_vmf(mu_minus, kappa, samples, generator=generator)
    x = torch.where(labels_plus[:, None], x_plus, x_minus)  # (samples, d)
    s = torch.where(labels_plus, 1.0, -1.0).double()
    errors = (s[None, :] * (delta @ x.T) <= 0).double()  # (5, samples)
    estimate = errors.mean(dim=1).numpy()
    standard_error = errors.std(dim=1).numpy() / math.sqrt(samples)
    for value, mean, error in zip(exact, estimate, standard_error):
        assert abs(value - mean) < 3 * error


def test_population_risk_shape_and_torch_input():
    d = 6
    mu_plus, mu_minus = vmf.two_class_means(d, 1.0)
    delta = torch.randn(2, 3, d, dtype=torch.float64)
    value = risk.population_risk(delta, mu_plus, mu_minus, 4.0)
    assert value.shape == (2, 3)
    assert np.allclose(value, risk.population_risk(delta.numpy(), mu_plus.numpy(), mu_minus.numpy(), 4.0))


def test_population_risk_negation_and_zero():
    d, kappa = 10, 8.0
    mu_plus, mu_minus = vmf.two_class_means(d, 0.9)
    delta = np.random.default_rng(3).normal(size=(20, d))
    total = risk.population_risk(delta, mu_plus, mu_minus, kappa) + risk.population_risk(
        -delta, mu_plus, mu_minus, kappa
    )
    assert np.max(np.abs(total - 1.0)) < 1e-15
    # Every margin of the zero boundary is 0, and R = P(r <= 0) counts it as an error.
    assert risk.population_risk(np.zeros(d), mu_plus, mu_minus, kappa) == 1.0


def test_bayes_risk_at_bayes_boundary():
    d, kappa, phi = 20, 15.0, 1.0
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    at_bayes = risk.population_risk(mu_plus - mu_minus, mu_plus, mu_minus, kappa)
    assert at_bayes == pytest.approx(risk.bayes_risk(d, kappa, phi), abs=1e-15)


def test_bayes_boundary_minimises_nearby_risk():
    d, kappa, phi = 20, 15.0, 1.0
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    bayes = (mu_plus - mu_minus).numpy()
    bayes = bayes / np.linalg.norm(bayes)
    directions = np.random.default_rng(5).normal(size=(200, d))
    nearby = bayes + 0.05 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    values = risk.population_risk(nearby, mu_plus, mu_minus, kappa)
    assert np.all(values > risk.bayes_risk(d, kappa, phi))


def test_bayes_risk_with_prior_beats_centred_boundary():
    d, kappa, phi, prior = 12, 6.0, 0.8, 0.2
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    centred = risk.population_risk(mu_plus - mu_minus, mu_plus, mu_minus, kappa, prior=prior)
    assert risk.bayes_risk(d, kappa, phi, prior=prior) < centred
    # The Bayes rule's risk is also the minimum over offsets of the boundary.
    c = math.sin(phi / 2)
    offsets = np.linspace(-0.6, 0.6, 121)
    scan = prior * risk.negative_side_probability(c, d, kappa, threshold=offsets) + (
        1 - prior
    ) * risk.negative_side_probability(c, d, kappa, threshold=-offsets)
    assert risk.bayes_risk(d, kappa, phi, prior=prior) <= scan.min() + 1e-15


def test_bayes_risk_prior_matches_monte_carlo():
    generator = torch.Generator().manual_seed(2)
    d, kappa, phi, prior = 12, 6.0, 0.8, 0.2
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    threshold = risk.bayes_threshold(d, kappa, phi, prior)
    u = (mu_plus - mu_minus) / (mu_plus - mu_minus).norm()
    samples = 200_000
    x_plus = vmf.sample_vmf(mu_plus, kappa, samples, generator=generator)
    x_minus = vmf.sample_vmf(mu_minus, kappa, samples, generator=generator)
    errors = prior * (x_plus @ u <= threshold).double() + (1 - prior) * (x_minus @ u > threshold).double()
    estimate, error = errors.mean().item(), errors.std().item() / math.sqrt(samples)
    assert abs(risk.bayes_risk(d, kappa, phi, prior=prior) - estimate) < 3 * error


def test_projection_expectation_moments():
    d, kappa = 24, 18.0
    c = np.array([1.0, 0.5, 0.0, -0.3])
    first = risk.projection_expectation(lambda y: y, c, d, kappa)
    resultant = float(vmf.mean_resultant_length(d, kappa))
    assert np.allclose(first, resultant * c, atol=1e-13)
    mean_w, mean_w2 = (float(v) for v in vmf.w_moments(d, kappa))
    second = risk.projection_expectation(np.square, c, d, kappa)
    expected = c**2 * mean_w2 + (1 - c**2) * (1 - mean_w2) / (d - 1)
    assert np.allclose(second, expected, atol=1e-13)
    assert np.allclose(risk.projection_expectation(np.ones_like, c, d, kappa), 1.0, atol=1e-14)


def test_projection_expectation_matches_monte_carlo():
    generator = torch.Generator().manual_seed(4)
    d, kappa, c = 16, 10.0, 0.4
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0] = 1.0
    u = torch.zeros(d, dtype=torch.float64)
    u[0], u[1] = c, math.sqrt(1 - c * c)
    values = torch.sigmoid(-5.0 * (vmf.sample_vmf(mu, kappa, 200_000, generator=generator) @ u))
    estimate, error = values.mean().item(), values.std().item() / math.sqrt(values.numel())
    exact = float(risk.projection_expectation(lambda y: special.expit(-5.0 * y), c, d, kappa))
    assert abs(exact - estimate) < 3 * error


@pytest.mark.parametrize(
    "call",
    [
        lambda: risk.negative_side_probability(0.5, 1, 1.0),
        lambda: risk.negative_side_probability(0.5, 3.0, 1.0),
        lambda: risk.negative_side_probability(0.5, 8, -1.0),
        lambda: risk.negative_side_probability(0.5, 8, [1.0, 2.0]),
        lambda: risk.negative_side_probability(1.5, 8, 1.0),
        lambda: risk.negative_side_probability(np.nan, 8, 1.0),
        lambda: risk.negative_side_probability(0.5, 8, 1.0, threshold=2.0),
        lambda: risk.projection_expectation("square", 0.5, 8, 1.0),
        lambda: risk.projection_expectation(np.square, 0.5, 8, 1.0, tangential_nodes=0),
        lambda: risk.projection_expectation(lambda y: y[..., :1], 0.5, 8, 1.0),
        lambda: risk.population_risk(np.ones(4), np.ones(4), -np.ones(4) / 2, 1.0),
        lambda: risk.population_risk(np.ones(3), np.eye(4)[0], np.eye(4)[1], 1.0),
        lambda: risk.population_risk(np.ones(4), np.eye(4)[0], np.eye(4)[1], 1.0, prior=1.5),
        lambda: risk.population_risk(np.full(4, np.nan), np.eye(4)[0], np.eye(4)[1], 1.0),
        lambda: risk.bayes_risk(8, 1.0, 4.0),
    ],
)
def test_invalid_input_raises(call):
    with pytest.raises((ValueError, TypeError)):
        call()
