"""Tests of noisypo.bounds_b2: the book's Lemma B.2 on the labelled mean difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from noisypo import bounds_b2, noise, vmf


def _datasets(trials: int, n: int, epsilon: float, d: int, kappa: float, phi: float, seed: int):
    """Sample ``trials`` noisy datasets with SciPy's vMF sampler (independent of noisypo.vmf).

    Returns the cosines between m and mu_+ - mu_-, the radial parts u . m and
    the tangential parts |(I - u u^T) m|, each of shape (trials,).
    """
    mu_plus = np.zeros(d)
    mu_plus[0], mu_plus[1] = math.cos(phi / 2), math.sin(phi / 2)
    mu_minus = mu_plus * np.array([1.0, -1.0] + [1.0] * (d - 2))
    rng = np.random.default_rng(seed)
    x_plus = stats.vonmises_fisher(mu_plus, kappa).rvs(trials * n, random_state=rng)
    x_minus = stats.vonmises_fisher(mu_minus, kappa).rvs(trials * n, random_state=rng)
    x = np.concatenate([x_plus.reshape(trials, n, d), x_minus.reshape(trials, n, d)], axis=1)
    clean = torch.cat([torch.ones(trials, n), -torch.ones(trials, n)], dim=1).double()
    s = noise.mislabel(clean, epsilon, generator=torch.Generator().manual_seed(seed))
    x = torch.as_tensor(x)
    cosine = bounds_b2.mean_difference_cosine(
        x, s, torch.as_tensor(mu_plus), torch.as_tensor(mu_minus)
    ).numpy()
    m = (s.unsqueeze(-1) * x).mean(dim=1).numpy()  # (trials, d)
    radial = m[:, 1]  # u = e2
    tangential = np.linalg.norm(np.delete(m, 1, axis=1), axis=1)
    return cosine, radial, tangential


# --------------------------------------------------------------------------
# Ingredients of the proof
# --------------------------------------------------------------------------


@pytest.mark.parametrize("d", [3, 4, 8, 64, 576, 4096])
def test_resultant_lower_bound_below_exact(d):
    kappa = np.geomspace(1e-3, 1e4, 200)
    exact = vmf.mean_resultant_length(d, kappa)
    lower = bounds_b2.mean_resultant_lower_bound(d, kappa)
    # At kappa -> 0 both are kappa / d to about 1e-15 relative, the float64 noise.
    assert bool(np.all(lower <= exact * (1 + 1e-13)))


def test_resultant_lower_bound_tight_in_high_dimension():
    gamma = np.array([0.1, 0.5, 1.0, 4.0])
    d = 4096
    exact = vmf.mean_resultant_length(d, gamma * d)
    lower = bounds_b2.mean_resultant_lower_bound(d, gamma * d)
    assert bool(np.all((exact - lower) / exact < 1e-3))


def test_resultant_lower_bound_depends_on_gamma_only():
    closed_form = 2 * 0.7 / (1 + math.sqrt(1 + 4 * 0.7**2))
    assert math.isclose(bounds_b2.mean_resultant_lower_bound(10, 7.0), closed_form, rel_tol=1e-14)
    assert math.isclose(bounds_b2.mean_resultant_lower_bound(1000, 700.0), closed_form, rel_tol=1e-14)


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_radial_mean_is_shrunk_signal(epsilon):
    d, kappa, phi, n, trials = 8, 10.0, math.pi / 2, 40, 2000
    _, radial, _ = _datasets(trials, n, epsilon, d, kappa, phi, seed=1)
    expected = (1 - 2 * epsilon) * float(vmf.mean_resultant_length(d, kappa)) * math.sin(phi / 2)
    standard_error = radial.std() / math.sqrt(trials)
    assert abs(radial.mean() - expected) < 4.5 * standard_error


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_tangential_second_moment_is_variance_over_n(epsilon):
    d, kappa, phi, n, trials = 8, 10.0, math.pi / 3, 40, 2000
    _, _, tangential = _datasets(trials, n, epsilon, d, kappa, phi, seed=2)
    expected = float(bounds_b2.tangential_variance(epsilon, d, kappa, phi)) / (2 * n)
    squares = tangential**2
    standard_error = squares.std() / math.sqrt(trials)
    assert abs(squares.mean() - expected) < 4.5 * standard_error


def test_closed_form_variance_bounds_exact():
    epsilon = np.array([0.0, 0.1, 0.3, 0.45])[:, None]
    kappa = np.array([0.5, 4.0, 32.0, 256.0])[None, :]
    for d, phi in [(3, 0.3), (16, math.pi / 2), (128, math.pi)]:
        exact = bounds_b2.tangential_variance(epsilon, d, kappa, phi)
        lower = bounds_b2.mean_resultant_lower_bound(d, kappa)
        c2 = math.sin(phi / 2) ** 2
        closed_form = 1 - lower**2 * (c2 + (1 - 2 * epsilon) ** 2 * (1 - c2))
        assert bool(np.all(exact <= closed_form))


# --------------------------------------------------------------------------
# The lemma: the bound holds with probability at least 1 - delta
# --------------------------------------------------------------------------

SETTINGS = [
    # (n, epsilon, d, kappa, phi)
    (20, 0.0, 8, 16.0, math.pi / 2),
    (50, 0.1, 16, 32.0, math.pi / 2),
    (400, 0.25, 16, 16.0, math.pi / 3),
    (200, 0.35, 8, 24.0, 2.0),
    (300, 0.0, 32, 16.0, math.pi / 4),
]


@pytest.mark.parametrize("exact_moments", [False, True])
@pytest.mark.parametrize("n, epsilon, d, kappa, phi", SETTINGS)
def test_bound_holds_with_stated_probability(n, epsilon, d, kappa, phi, exact_moments):
    delta, trials = 0.05, 300
    cosine, _, _ = _datasets(trials, n, epsilon, d, kappa, phi, seed=3)
    bound = float(
        bounds_b2.cosine_lower_bound(n, epsilon, d, kappa, phi, delta, exact_moments=exact_moments)
    )
    coverage = float(np.mean(cosine >= bound))
    slack = 3 * math.sqrt(delta * (1 - delta) / trials)
    assert bound > 0, "choose settings where the lemma says something"
    assert coverage >= 1 - delta - slack


def test_bound_below_one_and_nontrivial():
    bound = bounds_b2.cosine_lower_bound(10_000, 0.1, 16, 32.0, math.pi / 2, 0.05)
    assert 0.9 < bound < 1.0


def test_bound_increases_with_n_and_decreases_with_epsilon():
    n = np.array([10, 100, 1000, 10_000])
    by_n = bounds_b2.cosine_lower_bound(n, 0.1, 16, 32.0, math.pi / 2, 0.05)
    assert bool(np.all(np.diff(by_n) > 0))
    by_epsilon = bounds_b2.cosine_lower_bound(1000, np.array([0.0, 0.1, 0.2, 0.3]), 16, 32.0, 1.0, 0.05)
    assert bool(np.all(np.diff(by_epsilon) < 0))


def test_exact_moments_tighter():
    closed_form = bounds_b2.cosine_lower_bound(200, 0.2, 8, 8.0, 1.0, 0.05)
    exact = bounds_b2.cosine_lower_bound(200, 0.2, 8, 8.0, 1.0, 0.05, exact_moments=True)
    assert exact > closed_form


def test_bound_trivial_when_signal_too_weak():
    assert bounds_b2.cosine_lower_bound(5, 0.45, 16, 16.0, 1.0, 0.05) == -1.0


def test_sample_size_scales_as_inverse_square_signal():
    args = (0.5, 16, 16.0, math.pi / 2, 0.1)
    clean = bounds_b2.sample_size_for_cosine(args[0], 0.0, *args[1:])
    for epsilon in (0.1, 0.2, 0.3, 0.4, 0.45):
        noisy = bounds_b2.sample_size_for_cosine(args[0], epsilon, *args[1:])
        assert abs(noisy * (1 - 2 * epsilon) ** 2 / clean - 1) < 0.1, epsilon


def test_sample_size_is_smallest():
    n = bounds_b2.sample_size_for_cosine(0.8, 0.2, 16, 16.0, 1.0, 0.05)
    assert bounds_b2.cosine_lower_bound(n, 0.2, 16, 16.0, 1.0, 0.05) >= 0.8
    assert bounds_b2.cosine_lower_bound(n - 1, 0.2, 16, 16.0, 1.0, 0.05) < 0.8


@pytest.mark.parametrize(
    "n, epsilon, d, kappa, phi, delta, match",
    [
        (0, 0.1, 8, 1.0, 1.0, 0.05, "n="),
        (10, 0.5, 8, 1.0, 1.0, 0.05, "epsilon"),
        (10, -0.1, 8, 1.0, 1.0, 0.05, "epsilon"),
        (10, 0.1, 2, 1.0, 1.0, 0.05, "dimension"),
        (10, 0.1, 8, 0.0, 1.0, 0.05, "kappa"),
        (10, 0.1, 8, 1.0, 0.0, 0.05, "phi"),
        (10, 0.1, 8, 1.0, 1.0, 0.0, "delta"),
        (10, 0.1, 8, 1.0, 1.0, 1.0, "delta"),
    ],
)
def test_bound_rejects_invalid_inputs(n, epsilon, d, kappa, phi, delta, match):
    with pytest.raises(ValueError, match=match):
        bounds_b2.cosine_lower_bound(n, epsilon, d, kappa, phi, delta)


def test_sample_size_rejects_invalid_target():
    with pytest.raises(ValueError, match="target"):
        bounds_b2.sample_size_for_cosine(1.0, 0.1, 8, 1.0, 1.0, 0.05)
