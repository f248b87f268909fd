"""Tests of noisypo.noise: random flips, uncertain labels and the omega maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from noisypo import noise, risk

D, KAPPA, PHI = 16, 20.0, math.pi / 3


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vmf_class_plus(n: int, seed: int) -> np.ndarray:
    """Samples of the + class from SciPy's sampler (independent of noisypo)."""
    mu = np.zeros(D)
    mu[0], mu[1] = math.cos(PHI / 2), math.sin(PHI / 2)
    return stats.vonmises_fisher(mu, KAPPA).rvs(n, random_state=seed)


def _binomial_interval(count: int, total: int) -> tuple[float, float]:
    interval = stats.binomtest(count, total).proportion_ci(confidence_level=0.9999)
    return interval.low, interval.high


# --------------------------------------------------------------------------
# Random flips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.25, 0.5, 0.8])
def test_flip_fraction_in_binomial_interval(epsilon):
    labels = torch.ones(200_000, dtype=torch.int64)
    noisy = noise.mislabel(labels, epsilon, generator=_generator(1))
    flips = int((noisy != labels).sum())
    low, high = _binomial_interval(flips, labels.numel())
    assert low <= epsilon <= high


def test_flip_fraction_antithetic_in_binomial_interval():
    masks = noise.flip_mask(100_000, [0.2, 0.7], generator=_generator(2), antithetic=True)
    for k, epsilon in enumerate([0.2, 0.7]):
        low, high = _binomial_interval(int(masks[k].sum()), masks.shape[1])
        assert low <= epsilon <= high


def test_flips_independent_across_labels():
    mask = noise.flip_mask(200_000, 0.3, generator=_generator(3))[0].numpy()
    both = int(np.sum(mask[0::2] & mask[1::2]))
    low, high = _binomial_interval(both, mask.size // 2)
    assert low <= 0.09 <= high


def test_mislabel_flips_exactly_the_mask():
    labels = torch.tensor([1, -1, 1, 1, -1, -1, 1, -1] * 100)
    noisy, mask = noise.mislabel(labels, 0.3, generator=_generator(4), return_mask=True)
    assert torch.equal(noisy[mask], -labels[mask])
    assert torch.equal(noisy[~mask], labels[~mask])


def test_mislabel_shapes_and_dtype():
    labels = torch.ones(5, 7, dtype=torch.float32)
    single = noise.mislabel(labels, 0.1, generator=_generator(5))
    batch = noise.mislabel(labels, [0.0, 0.1, 0.2], generator=_generator(5))
    assert single.shape == (5, 7)
    assert batch.shape == (3, 5, 7)
    assert batch.dtype == torch.float32


def test_mislabel_edge_rates():
    labels = torch.tensor([1, -1, 1, -1])
    batch = noise.mislabel(labels, [0.0, 1.0], generator=_generator(6))
    assert torch.equal(batch[0], labels)
    assert torch.equal(batch[1], -labels)


def test_masks_nested_over_rates():
    rates = np.linspace(0.0, 1.0, 41)
    masks = noise.flip_mask((20, 500), rates, generator=_generator(7))
    assert bool((masks[:-1] <= masks[1:]).all())


def test_masks_share_uniforms_across_batch():
    batch = noise.flip_mask(1000, [0.1, 0.3], generator=_generator(8))
    alone = noise.flip_mask(1000, 0.3, generator=_generator(8))
    assert torch.equal(batch[1], alone[0])


@pytest.mark.parametrize(
    "rates",
    [np.linspace(0.0, 1.0, 41), np.arange(0.0, 1.0001, 0.025), np.arange(0.0, 1.0001, 0.05)],
)
def test_antithetic_masks_complement_exactly(rates):
    masks = noise.flip_mask((30, 400), rates, generator=_generator(9), antithetic=True)
    count = len(rates)
    for k in range(count // 2):
        assert torch.equal(masks[count - 1 - k], ~masks[k]), rates[k]


def test_antithetic_thresholds_pair_on_common_grids():
    # The masks at eps and 1 - eps are complements iff T(eps) == T(1 - eps').
    grids = [np.linspace(0.0, 1.0, count) for count in range(2, 402)]
    grids += [np.arange(0.0, 1.0 + step / 2, step) for step in (0.05, 0.025, 0.01, 0.005, 0.001, 0.0001)]
    for grid in grids:
        half = len(grid) // 2
        lower = noise._thresholds(grid[:half])
        partner = noise._thresholds(1.0 - grid[::-1][:half])
        assert torch.equal(lower, partner), len(grid)


def test_antithetic_complement_of_mislabel():
    labels = torch.where(torch.rand(2000, generator=_generator(10)) < 0.5, 1, -1)
    noisy = noise.mislabel(labels, [0.15, 0.85], generator=_generator(11), antithetic=True)
    assert torch.equal(noisy[1], -noisy[0])


def test_antithetic_nested_on_each_half():
    rates = np.linspace(0.0, 1.0, 21)
    masks = noise.flip_mask(3000, rates, generator=_generator(12), antithetic=True)
    assert bool((masks[:10] <= masks[1:11]).all())
    assert bool((masks[11:-1] <= masks[12:]).all())


def test_same_seed_same_mask_other_seed_differs():
    first = noise.flip_mask(5000, 0.2, generator=_generator(13))
    again = noise.flip_mask(5000, 0.2, generator=_generator(13))
    other = noise.flip_mask(5000, 0.2, generator=_generator(14))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("epsilon", [-0.1, 1.1, float("nan"), [0.1, 2.0]])
def test_mislabel_rejects_invalid_rate(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        noise.mislabel(torch.ones(4), epsilon)


@pytest.mark.parametrize("labels", [[1, 0, -1], [2, 1], [0.5, -1.0]])
def test_mislabel_rejects_invalid_labels(labels):
    with pytest.raises(ValueError, match="label"):
        noise.mislabel(torch.tensor(labels), 0.1)


def test_mislabel_rejects_bool_labels():
    with pytest.raises(TypeError, match="bool"):
        noise.mislabel(torch.tensor([True, False]), 0.1)


def test_flip_mask_rejects_empty_rates():
    with pytest.raises(ValueError, match="empty"):
        noise.flip_mask(4, [])


# --------------------------------------------------------------------------
# Uncertain labels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("reward, omega", [(1.0, 1.0), (2.0, 0.5), (-1.0, 4.0), (0.0, 1.0)])
def test_uncertain_labels_probability(reward, omega):
    rewards = torch.full((200_000,), reward, dtype=torch.float64)
    labels = noise.uncertain_labels(rewards, omega, generator=_generator(20))
    positives = int((labels == 1).sum())
    low, high = _binomial_interval(positives, rewards.numel())
    assert low <= expit(reward / omega) <= high


def test_uncertain_labels_values_and_shape():
    rewards = torch.randn(4, 6, dtype=torch.float64, generator=_generator(21))
    labels = noise.uncertain_labels(rewards, [0.5, 1.0, 2.0], generator=_generator(22))
    assert labels.shape == (3, 4, 6)
    assert bool(((labels == 1) | (labels == -1)).all())


def test_uncertain_labels_nested_over_omega():
    rewards = torch.rand(5000, dtype=torch.float64, generator=_generator(23)) * 3.0
    omegas = [0.1, 0.5, 1.0, 3.0, 10.0]
    labels = noise.uncertain_labels(rewards, omegas, generator=_generator(24))
    disagree = labels == -1  # rewards > 0, so -1 disagrees with the class
    assert bool((disagree[:-1] <= disagree[1:]).all())


def test_uncertain_labels_infinite_omega_is_fair_coin():
    rewards = torch.full((100_000,), 5.0, dtype=torch.float64)
    labels = noise.uncertain_labels(rewards, math.inf, generator=_generator(25))
    low, high = _binomial_interval(int((labels == 1).sum()), rewards.numel())
    assert low <= 0.5 <= high


@pytest.mark.parametrize("omega", [0.0, -1.0, float("nan"), [1.0, 0.0]])
def test_uncertain_labels_rejects_invalid_omega(omega):
    with pytest.raises(ValueError, match="omega"):
        noise.uncertain_labels(torch.zeros(3), omega)


def test_flip_probability_matches_sigmoid():
    rewards = torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64)
    labels = torch.tensor([1, 1, -1])
    probability = noise.uncertain_flip_probability(rewards, labels, 0.5)
    expected = torch.sigmoid(torch.tensor([-4.0, 2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(probability, expected, rtol=0, atol=1e-15)


def test_vmf_log_odds_matches_densities():
    mu_plus = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    mu_minus = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(10, 3, dtype=torch.float64, generator=_generator(26)), dim=-1)
    log_odds = noise.vmf_log_odds(x, mu_plus, mu_minus, 3.0)
    expected = stats.vonmises_fisher(mu_plus.numpy(), 3.0).logpdf(x.numpy()) - stats.vonmises_fisher(
        mu_minus.numpy(), 3.0
    ).logpdf(x.numpy())
    assert np.allclose(log_odds.numpy(), expected, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------
# The exact noise rate epsilon(omega) and its inverse
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plus_projections() -> np.ndarray:
    """u . x for 400,000 samples of the + class, u the unit normal of mu_+ - mu_-."""
    return _vmf_class_plus(400_000, seed=27)[:, 1]


@pytest.mark.parametrize("omega", [0.05, 0.3, 1.0, 3.0, 20.0])
def test_noise_rate_exact_matches_monte_carlo(omega, plus_projections):
    exact = noise.uncertain_noise_rate(omega, D, KAPPA, PHI)
    slope = 2 * KAPPA * math.sin(PHI / 2) / omega
    values = expit(-slope * plus_projections)
    standard_error = values.std() / math.sqrt(values.size)
    assert abs(values.mean() - exact) < 4.5 * standard_error


@pytest.mark.parametrize("omega", [0.5, 1.0, 2.0, 5.0, 30.0])
def test_noise_rate_methods_agree(omega):
    thresholds = noise.uncertain_noise_rate(omega, D, KAPPA, PHI)
    projection = noise.uncertain_noise_rate(omega, D, KAPPA, PHI, method="projection")
    assert math.isclose(thresholds, projection, rel_tol=1e-10)


@pytest.mark.parametrize("omega", [0.02, 0.5, 3.0])
def test_noise_rate_high_dimension_matches_monte_carlo(omega):
    d, kappa, phi = 256, 256.0, 0.4
    mu = np.zeros(d)
    mu[0], mu[1] = math.cos(phi / 2), math.sin(phi / 2)
    projections = stats.vonmises_fisher(mu, kappa).rvs(100_000, random_state=28)[:, 1]
    values = expit(-2 * kappa * math.sin(phi / 2) / omega * projections)
    exact = noise.uncertain_noise_rate(omega, d, kappa, phi)
    standard_error = values.std() / math.sqrt(values.size)
    assert abs(values.mean() - exact) < 4.5 * standard_error


def test_noise_rate_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        noise.uncertain_noise_rate(1.0, D, KAPPA, PHI, method="monte-carlo")


def test_noise_rate_limits():
    bayes = float(risk.negative_side_probability(math.sin(PHI / 2), D, KAPPA))
    small = noise.uncertain_noise_rate(1e-3, D, KAPPA, PHI)
    assert 0 < small - bayes < 1e-7
    assert abs(noise.uncertain_noise_rate(1e6, D, KAPPA, PHI) - 0.5) < 1e-5
    assert noise.uncertain_noise_rate(math.inf, D, KAPPA, PHI) == 0.5


def test_noise_rate_excess_over_bayes_quadratic():
    # sigma(-a z) - 1{z < 0} is odd in z, so its mean is O(1 / a^2) and
    # epsilon(omega) - R* shrinks like omega^2.
    bayes = float(risk.negative_side_probability(math.sin(PHI / 2), D, KAPPA))
    excess = noise.uncertain_noise_rate([0.005, 0.01], D, KAPPA, PHI) - bayes
    assert abs(excess[1] / excess[0] - 4.0) < 0.01


def test_noise_rate_increases_with_omega():
    rates = noise.uncertain_noise_rate(np.geomspace(0.01, 100, 25), D, KAPPA, PHI)
    assert bool(np.all(np.diff(rates) > 0))


def test_noise_rate_vector_matches_scalars():
    omegas = [0.2, 2.0]
    vector = noise.uncertain_noise_rate(omegas, D, KAPPA, PHI)
    scalars = [noise.uncertain_noise_rate(value, D, KAPPA, PHI) for value in omegas]
    assert np.array_equal(vector, scalars)


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.25, 0.45])
def test_omega_for_noise_rate_round_trip(epsilon):
    omega = noise.omega_for_noise_rate(epsilon, D, KAPPA, PHI)
    assert abs(noise.uncertain_noise_rate(omega, D, KAPPA, PHI) - epsilon) < 1e-9


@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.5, 0.7])
def test_omega_for_noise_rate_rejects_unreachable(epsilon):
    with pytest.raises(ValueError, match="Bayes risk"):
        noise.omega_for_noise_rate(epsilon, D, KAPPA, PHI)


@pytest.mark.parametrize(
    "d, kappa, phi", [(2, 1.0, 1.0), (8, 0.0, 1.0), (8, 1.0, 0.0), (8, 1.0, 4.0)]
)
def test_noise_rate_rejects_invalid_setting(d, kappa, phi):
    with pytest.raises(ValueError, match="invalid"):
        noise.uncertain_noise_rate(1.0, d, kappa, phi)


def test_noise_rate_rejects_invalid_omega():
    with pytest.raises(ValueError, match="omega"):
        noise.uncertain_noise_rate(0.0, D, KAPPA, PHI)


# --------------------------------------------------------------------------
# The real-data recipe: linear reward model and omega search
# --------------------------------------------------------------------------


def _two_class_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x_plus = _vmf_class_plus(n, seed)
    # Reflecting e2 maps mu_+ to mu_-, so reflected + samples are - samples.
    x_minus = _vmf_class_plus(n, seed + 1) * np.array([1.0, -1.0] + [1.0] * (D - 2))
    labels = np.concatenate([np.ones(n), -np.ones(n)])
    return np.concatenate([x_plus, x_minus]), labels


@pytest.fixture(scope="module")
def fitted() -> tuple[np.ndarray, np.ndarray, noise.LinearReward]:
    """Two vMF classes of 300 samples each and the reward model fitted to them."""
    x, labels = _two_class_data(300, seed=30)
    return x, labels, noise.fit_linear_reward(x, labels)


def test_fit_linear_reward_separates_classes(fitted):
    x, labels, model = fitted
    accuracy = float(np.mean(np.sign(model(x).numpy()) == labels))
    assert model.losses[-1] < model.losses[0]
    assert accuracy > 0.9


def test_fit_linear_reward_is_deterministic():
    x, labels = _two_class_data(50, seed=31)
    first = noise.fit_linear_reward(x, labels, epochs=20)
    again = noise.fit_linear_reward(x, labels, epochs=20)
    assert torch.equal(first.weight, again.weight)


@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.3, 0.4])
def test_omega_for_flip_rate_reaches_tolerance(epsilon, fitted):
    x, labels, model = fitted
    rewards = model(x)
    omega = noise.omega_for_flip_rate(rewards, labels, epsilon, tol=1e-3)
    achieved = noise.mean_flip_probability(rewards, labels, omega)
    assert abs(achieved - epsilon) <= 1e-3


def test_omega_for_flip_rate_rejects_below_training_error():
    rewards = np.array([1.0, -1.0, 2.0, 0.5])
    labels = np.array([1, 1, 1, 1])  # one of four misclassified
    with pytest.raises(ValueError, match="misclassifies"):
        noise.omega_for_flip_rate(rewards, labels, 0.2)


def test_omega_for_flip_rate_rejects_invalid_inputs():
    rewards, labels = np.array([1.0, -1.0]), np.array([1, -1])
    with pytest.raises(ValueError, match="epsilon"):
        noise.omega_for_flip_rate(rewards, labels, 1.5)
    with pytest.raises(ValueError, match="tol"):
        noise.omega_for_flip_rate(rewards, labels, 0.2, tol=0.0)
    with pytest.raises(ValueError, match="label"):
        noise.omega_for_flip_rate(rewards, np.array([1, 0]), 0.2)
    with pytest.raises(ValueError, match="shape"):
        noise.omega_for_flip_rate(rewards, np.array([1, -1, 1]), 0.2)


def test_fit_linear_reward_rejects_invalid_inputs():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="shape"):
        noise.fit_linear_reward(x, np.array([1, -1]))
    with pytest.raises(ValueError, match="epochs"):
        noise.fit_linear_reward(x, np.array([1, -1, 1, -1]), epochs=0)
    with pytest.raises(ValueError, match="learning rate"):
        noise.fit_linear_reward(x, np.array([1, -1, 1, -1]), lr=-1.0)


@pytest.mark.llm
def test_omega_search_on_persona_embeddings(persona_dir):
    from noisypo.embeddings import persona_embeddings

    embeddings = persona_embeddings("Behavior 1", limit=64)
    x = embeddings.x.astype(np.float64)  # raw embeddings, as in the noisy-feedback chapter
    labels = embeddings.labels.astype(np.int64)
    rewards = noise.fit_linear_reward(x, labels)(x)
    for epsilon in (0.1, 0.3):
        omega = noise.omega_for_flip_rate(rewards, labels, epsilon, tol=1e-3)
        achieved = noise.mean_flip_probability(rewards, labels, omega)
        assert abs(achieved - epsilon) <= 1e-3


# --------------------------------------------------------------------------
# The book's Lemma C.1: an upper bound on epsilon(omega)
# --------------------------------------------------------------------------

C1_SETTINGS = [(16, 20.0, math.pi / 3), (8, 4.0, math.pi / 2), (64, 128.0, math.pi / 3), (3, 1.0, 2.5)]


@pytest.mark.parametrize("d, kappa, phi", C1_SETTINGS)
def test_noise_rate_at_two_is_half_bhattacharyya(d, kappa, phi):
    exact = noise.uncertain_noise_rate(2.0, d, kappa, phi)
    closed_form = 0.5 * noise.bhattacharyya_coefficient(d, kappa, phi)
    assert math.isclose(exact, closed_form, rel_tol=1e-9)


@pytest.mark.parametrize("d, kappa, phi", C1_SETTINGS)
def test_noise_rate_bound_above_exact(d, kappa, phi):
    omegas = np.geomspace(0.05, 50.0, 13)
    exact = noise.uncertain_noise_rate(omegas, d, kappa, phi)
    bound = noise.uncertain_noise_rate_bound(omegas, d, kappa, phi)
    assert bool(np.all(bound >= exact * (1 - 1e-9)))
    assert bool(np.all(bound <= 0.5))


def test_noise_rate_bound_above_monte_carlo(plus_projections):
    omega = 4.0
    slope = 2 * KAPPA * math.sin(PHI / 2) / omega
    values = expit(-slope * plus_projections)
    upper = values.mean() - 4.5 * values.std() / math.sqrt(values.size)
    assert noise.uncertain_noise_rate_bound(omega, D, KAPPA, PHI) >= upper


def test_noise_rate_bound_is_flat_below_two():
    bound = noise.uncertain_noise_rate_bound([0.1, 1.0, 2.0], D, KAPPA, PHI)
    half_coefficient = 0.5 * noise.bhattacharyya_coefficient(D, KAPPA, PHI)
    assert np.allclose(bound, half_coefficient, rtol=1e-12, atol=0)
