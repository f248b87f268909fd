"""Tests of noisypo.vmf: exact quantities against mpmath, the sampler, the fit."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from noisypo import vmf

DIMS = [2, 3, 10, 100, 1000, 4096, 10000]
KAPPAS = [1e-4, 1e-2, 0.5, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]


def _mp_log_iv(nu: float, kappa: float) -> mp.mpf:
    """log I_nu(kappa) with mpmath, 30 digits.

    mpmath's besseli sums a hypergeometric series that stalls for large
    order and kappa near 1e5, so there the reference integrates
    I_nu(k) = (k/2)^nu / (sqrt(pi) Gamma(nu + 1/2)) int_{-1}^{1} e^{kt} (1 - t^2)^{nu - 1/2} dt
    with the integrand scaled by its maximum.
    """
    with mp.workdps(30):
        nu, k = mp.mpf(nu), mp.mpf(kappa)
        if nu < 50 or k < 1e4:
            return mp.log(mp.besseli(nu, k, maxterms=10**7))
        p = nu - mp.mpf(1) / 2
        t_star = 2 * k / (2 * p + mp.sqrt(4 * p * p + 4 * k * k))
        peak = k * t_star + p * mp.log(1 - t_star**2)
        width = (1 - t_star**2) / mp.sqrt(2 * p * (1 + t_star**2))
        points = [-1] + [t_star + j * width for j in (-60, -10, 0, 10) if -1 < t_star + j * width < 1] + [1]
        integral = mp.quad(lambda t: mp.exp(k * t + p * mp.log(1 - t * t) - peak), points)
        return (
            nu * mp.log(k / 2)
            - mp.log(mp.sqrt(mp.pi))
            - mp.loggamma(nu + mp.mpf(1) / 2)
            + peak
            + mp.log(integral)
        )


def _mp_log_normalizer(d: int, kappa: float) -> float:
    with mp.workdps(30):
        nu = mp.mpf(d) / 2 - 1
        value = nu * mp.log(kappa) - mp.mpf(d) / 2 * mp.log(2 * mp.pi) - _mp_log_iv(nu, kappa)
        return float(value)


def _mp_mean_resultant(d: int, kappa: float) -> float:
    with mp.workdps(30):
        nu = mp.mpf(d) / 2 - 1
        return float(mp.exp(_mp_log_iv(nu + 1, kappa) - _mp_log_iv(nu, kappa)))


@pytest.fixture(scope="module")
def mp_reference():
    table = {}
    for d in DIMS:
        for kappa in KAPPAS:
            table[d, kappa] = (_mp_log_normalizer(d, kappa), _mp_mean_resultant(d, kappa))
    return table


def test_mp_reference_methods_agree():
    # The two reference routes must agree where both work.
    nu, k = 499.0, 2e4
    with mp.workdps(30):
        direct = mp.log(mp.besseli(nu, k, maxterms=10**7))
    assert abs(float(direct - _mp_log_iv(nu, k))) < 1e-20 * abs(float(direct))


@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_matches_mpmath(d, mp_reference):
    values = vmf.log_normalizer(d, np.array(KAPPAS))
    for kappa, value in zip(KAPPAS, values):
        ref = mp_reference[d, kappa][0]
        assert abs(value - ref) <= 1e-10 * abs(ref), (d, kappa, value, ref)


@pytest.mark.parametrize("d", DIMS)
def test_mean_resultant_matches_mpmath(d, mp_reference):
    values = vmf.mean_resultant_length(d, np.array(KAPPAS))
    for kappa, value in zip(KAPPAS, values):
        ref = mp_reference[d, kappa][1]
        assert abs(value - ref) <= 1e-10 * ref, (d, kappa, value, ref)


@pytest.mark.parametrize("d", [2, 3, 10, 99, 100, 101, 102, 1000, 4096, 10000])
def test_derivative_of_log_normalizer(d):
    # d/dkappa log C_d = -A_d on a dense grid: a jump between numerical
    # regimes would show up as a failed central difference.
    kappa = np.logspace(-3, 6, 300)
    h = 1e-4 * kappa
    slope = (vmf.log_normalizer(d, kappa + h) - vmf.log_normalizer(d, kappa - h)) / (2 * h)
    a = vmf.mean_resultant_length(d, kappa)
    # Truncation error of the difference ~1e-8 relative; rounding error ~eps |log C| / h.
    rounding = 1e-14 * np.abs(vmf.log_normalizer(d, kappa)) / h
    assert np.all(np.abs(slope + a) <= 1e-6 * a + rounding)


def test_regime_switch_is_continuous():
    # The order nu = d/2 - 1 crosses 50 between d = 101 and d = 102.
    kappa = np.logspace(-4, 6, 200)
    for d in (101, 102):
        ref = np.array([_mp_mean_resultant(d, k) for k in kappa[::20]])
        got = vmf.mean_resultant_length(d, kappa[::20])
        assert np.all(np.abs(got - ref) <= 1e-10 * ref)


def test_closed_forms_at_d3():
    kappa = np.array([1e-3, 0.3, 2.0, 40.0, 700.0])
    log_c = np.log(kappa) - np.log(4 * np.pi) - kappa - np.log(-np.expm1(-2 * kappa)) + np.log(2.0)
    assert np.allclose(vmf.log_normalizer(3, kappa), log_c, rtol=1e-13)
    a = 1 / np.tanh(kappa) - 1 / kappa
    a[0] = kappa[0] / 3 - kappa[0] ** 3 / 45  # avoid cancellation in the reference
    assert np.allclose(vmf.mean_resultant_length(3, kappa), a, rtol=1e-12)


def test_kappa_zero_values():
    d = np.array([2, 3, 10, 4096])
    log_area = np.log(2) + d / 2 * np.log(np.pi) - np.array([math.lgamma(x / 2) for x in d])
    assert np.allclose(vmf.log_normalizer(d, 0.0), -log_area, rtol=1e-13)
    assert np.all(vmf.mean_resultant_length(d, 0.0) == 0.0)
    _, second = vmf.w_moments(d, 0.0)
    assert np.allclose(second, 1 / d, rtol=1e-14)


def test_mean_resultant_small_kappa_slope():
    for d in (2, 10, 4096, 10000):
        kappa = 1e-8
        assert math.isclose(float(vmf.mean_resultant_length(d, kappa)), kappa / d, rel_tol=1e-7)


def test_broadcasting_shapes():
    out = vmf.log_normalizer(np.array([[2], [3], [100]]), np.array([1.0, 2.0]))
    assert out.shape == (3, 2)
    assert vmf.mean_resultant_length(3, [0.5, 1.0, 2.0]).shape == (3,)


def _quad_w(func, d, kappa):
    """Integrate func(w) f_w(w) over [-1, 1] with SciPy's quad, around the mode."""
    mode = 2 * kappa / ((d - 3) + math.sqrt((d - 3) ** 2 + 4 * kappa**2))
    # Beyond 60 Laplace widths the density is below e^-1800 of its peak.
    lo, hi = -1.0, 1.0
    if d > 3:
        width = 1 / math.sqrt((d - 3) * (1 + mode**2) / (1 - mode**2) ** 2)
        lo, hi = max(-1.0, mode - 60 * width), min(1.0, mode + 60 * width)
    value, _ = integrate.quad(
        lambda w: func(w) * float(vmf.w_pdf(w, d, kappa)), lo, hi, points=[mode], limit=500
    )
    return value


@pytest.mark.parametrize("d,kappa", [(2, 3.0), (3, 0.5), (10, 20.0), (1000, 100.0), (10000, 1e6)])
def test_w_pdf_integrates_to_one(d, kappa):
    total = _quad_w(lambda w: 1.0, d, kappa)
    assert abs(total - 1.0) < 1e-8


@pytest.mark.parametrize("d,kappa", [(2, 3.0), (3, 0.5), (10, 20.0), (1000, 100.0), (4096, 1e6)])
def test_w_moments_match_quadrature(d, kappa):
    mean, second = vmf.w_moments(d, kappa)
    m1 = _quad_w(lambda w: w, d, kappa)
    m2 = _quad_w(lambda w: w * w, d, kappa)
    assert abs(mean - m1) < 1e-8
    assert abs(second - m2) < 1e-8


def test_w_cdf_closed_form_d3():
    kappa = 4.0
    w = np.linspace(-1, 1, 41)
    exact = np.expm1(kappa * (w + 1)) / np.expm1(2 * kappa)
    assert np.allclose(vmf.w_cdf(w, 3, kappa), exact, rtol=1e-12, atol=1e-15)


def test_w_cdf_uniform_circle():
    w = np.linspace(-1, 1, 21)
    assert np.allclose(vmf.w_cdf(w, 2, 0.0), 1 - np.arccos(w) / np.pi, atol=1e-13)


def test_w_cdf_lower_tail_relative_accuracy():
    # For d = 3 the lower tail is (e^{kappa(w+1)} - 1) / (e^{2 kappa} - 1), tiny near w = -1.
    kappa, w = 50.0, -0.9
    exact = math.expm1(kappa * (w + 1)) / math.expm1(2 * kappa)
    assert abs(float(vmf.w_cdf(w, 3, kappa)) / exact - 1) < 1e-10


def test_w_cdf_outside_interval():
    assert np.array_equal(vmf.w_cdf([-2.0, 1.5], 10, 3.0), [0.0, 1.0])


def test_w_logpdf_outside_is_minus_inf():
    assert np.all(vmf.w_logpdf([-1.2, 1.2], 10, 3.0) == -np.inf)


def _e1(d, dtype=torch.float64):
    mu = torch.zeros(d, dtype=dtype)
    mu[0] = 1.0
    return mu


@pytest.mark.parametrize("d,kappa", [(2, 0.0), (2, 5.0), (3, 1.0), (10, 30.0), (1000, 100.0), (4096, 1e4)])
def test_sampler_ks_against_exact_cdf(d, kappa):
    generator = torch.Generator().manual_seed(1)
    x = vmf.sample_vmf(_e1(d), kappa, 3000, generator=generator)
    w = x[:, 0].numpy()
    result = stats.kstest(w, lambda t: vmf.w_cdf(t, d, kappa))
    assert result.pvalue > 1e-3


def test_sampler_mean_within_standard_error():
    d, kappa, n = 50, 40.0, 20000
    generator = torch.Generator().manual_seed(2)
    mu = torch.randn(d, dtype=torch.float64, generator=generator)
    mu /= mu.norm()
    x = vmf.sample_vmf(mu, kappa, n, generator=generator)
    mean, second = vmf.w_moments(d, kappa)
    sample_mean = x.mean(0)
    # Along mu: standard error sqrt(var(w) / n); orthogonal: sqrt(A / kappa / n) per coordinate.
    along = float(sample_mean @ mu)
    se_along = math.sqrt((second - mean**2) / n)
    assert abs(along - mean) < 4 * se_along
    ortho = sample_mean - along * mu
    se_ortho = math.sqrt(float(vmf.mean_resultant_length(d, kappa)) / kappa / n)
    assert float(ortho.abs().max()) < 5 * se_ortho


@pytest.mark.parametrize("d", [2, 3, 1000, 10000])
@pytest.mark.parametrize("kappa", [0.0, 1e-4, 1.0, 1e3, 1e6])
def test_sampler_unit_norm_float32(d, kappa):
    generator = torch.Generator().manual_seed(3)
    mu = torch.randn(d, generator=generator)
    mu = mu / mu.norm()
    x = vmf.sample_vmf(mu, kappa, 200, generator=generator)
    assert x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    assert float((x.double().norm(dim=-1) - 1).abs().max()) < 1e-5


def test_sampler_large_kappa_concentrates_float32():
    d, kappa = 10000, 1e6
    mu = _e1(d, torch.float32)
    x = vmf.sample_vmf(mu, kappa, 500, generator=torch.Generator().manual_seed(4))
    w = x[:, 0].double()
    expected = float(vmf.mean_resultant_length(d, kappa))
    assert abs(float(w.mean()) - expected) < 1e-4
    assert bool(torch.isfinite(x).all())


def test_sampler_mu_e1_exactly():
    d, kappa = 20, 15.0
    x = vmf.sample_vmf(_e1(d), kappa, 5000, generator=torch.Generator().manual_seed(5))
    # With mu = e1 the reflection must be the identity, not the map e1 -> -e1.
    assert float(x[:, 0].mean()) > 0
    assert abs(float(x[:, 0].mean()) - float(vmf.mean_resultant_length(d, kappa))) < 0.01


def test_sampler_mu_minus_e1_and_near_e1():
    d, kappa = 30, 50.0
    a = float(vmf.mean_resultant_length(d, kappa))
    minus = -_e1(d)
    x = vmf.sample_vmf(minus, kappa, 4000, generator=torch.Generator().manual_seed(6))
    assert abs(float(x[:, 0].mean()) + a) < 0.01
    near = _e1(d, torch.float32).clone()
    near[1] = 1e-4
    near = near / near.norm()
    y = vmf.sample_vmf(near, kappa, 4000, generator=torch.Generator().manual_seed(7))
    assert abs(float(y.double().mean(0)[1]) - a * 1e-4) < 0.005


def test_sampler_kappa_zero_is_uniform():
    d = 5
    x = vmf.sample_vmf(_e1(d), 0.0, 20000, generator=torch.Generator().manual_seed(8))
    assert float(x.mean(0).abs().max()) < 4 / math.sqrt(20000)
    second = float((x[:, 0] ** 2).mean())
    assert abs(second - 1 / d) < 0.01


def test_sampler_matches_scipy_in_distribution():
    d, kappa, n = 10, 8.0, 4000
    mu_np = np.zeros(d)
    mu_np[3] = 1.0
    theirs = stats.vonmises_fisher(mu_np, kappa).rvs(n, random_state=9)
    ours = vmf.sample_vmf(torch.from_numpy(mu_np), kappa, n, generator=torch.Generator().manual_seed(9)).numpy()
    assert stats.ks_2samp(theirs @ mu_np, ours @ mu_np).pvalue > 1e-3
    # A tangential coordinate as well.
    assert stats.ks_2samp(theirs[:, 0], ours[:, 0]).pvalue > 1e-3


def test_sampler_batched_kappas():
    generator = torch.Generator().manual_seed(10)
    d = 40
    mu = torch.randn(3, 2, d, dtype=torch.float64, generator=generator)
    mu /= mu.norm(dim=-1, keepdim=True)
    kappa = torch.tensor([[0.0, 5.0], [50.0, 500.0], [1e3, 1e5]])
    x = vmf.sample_vmf(mu, kappa, 3000, generator=generator)
    assert x.shape == (3, 2, 3000, d)
    w_mean = torch.einsum("bcnd,bcd->bc", x, mu) / 3000
    expected = torch.from_numpy(vmf.mean_resultant_length(d, kappa.numpy()))
    assert float((w_mean - expected).abs().max()) < 0.02


def test_sampler_reproducible():
    mu = _e1(8)
    first = vmf.sample_vmf(mu, 3.0, 10, generator=torch.Generator().manual_seed(11))
    second = vmf.sample_vmf(mu, 3.0, 10, generator=torch.Generator().manual_seed(11))
    assert torch.equal(first, second)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    d=st.integers(2, 40),
    n=st.integers(0, 6),
    kappa=st.floats(0.0, 1e6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_sampler_shapes_and_dtypes(batch, d, n, kappa, dtype):
    generator = torch.Generator().manual_seed(12)
    mu = torch.randn(*batch, d, dtype=torch.float64, generator=generator)
    mu = (mu / mu.norm(dim=-1, keepdim=True)).to(dtype)
    x = vmf.sample_vmf(mu, kappa, n, generator=generator)
    assert x.shape == (*batch, n, d)
    assert x.dtype == dtype
    assert bool(torch.isfinite(x).all())
    if x.numel():
        assert float((x.double().norm(dim=-1) - 1).abs().max()) < 1e-5


def test_sampler_rejects_bad_input():
    mu = _e1(4)
    with pytest.raises(ValueError, match="unit norm"):
        vmf.sample_vmf(2 * mu, 1.0, 3)
    with pytest.raises(ValueError, match="kappa must be >= 0"):
        vmf.sample_vmf(mu, -1.0, 3)
    with pytest.raises(ValueError, match="NaN"):
        vmf.sample_vmf(mu, float("nan"), 3)
    with pytest.raises(ValueError, match="d >= 2"):
        vmf.sample_vmf(torch.ones(1, dtype=torch.float64), 1.0, 3)
    with pytest.raises(ValueError, match="broadcast"):
        vmf.sample_vmf(torch.stack([mu, mu]), torch.tensor([1.0, 2.0, 3.0]), 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        vmf.sample_vmf(mu, 1.0, -1)
    with pytest.raises(TypeError):
        vmf.sample_vmf(mu.numpy(), 1.0, 3)
    with pytest.raises(TypeError):
        vmf.sample_vmf(mu, 1.0, 2.5)


def test_unit_norm_message_gives_deviation():
    with pytest.raises(ValueError, match="0.1"):
        vmf.sample_vmf(1.1 * _e1(3), 1.0, 1)


def test_special_functions_reject_bad_input():
    with pytest.raises(ValueError, match="d must be >= 2"):
        vmf.log_normalizer(1, 1.0)
    with pytest.raises(ValueError, match="kappa must be >= 0"):
        vmf.mean_resultant_length(3, -0.1)
    with pytest.raises(ValueError, match="whole number"):
        vmf.log_normalizer(2.5, 1.0)
    with pytest.raises(ValueError, match="finite"):
        vmf.log_normalizer(3, np.inf)
    with pytest.raises(ValueError, match="NaN"):
        vmf.w_pdf(np.nan, 3, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        vmf.w_cdf(0.0, [3, 4], 1.0)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_scipy_log_normalizer_fails_where_ours_does_not():
    # SciPy's log-density is -inf at d = 4096, kappa = 100 (ive underflows).
    d, kappa = 4096, 100.0
    mu = np.zeros(d)
    mu[0] = 1.0
    theirs = stats.vonmises_fisher(mu, kappa).logpdf(mu)
    ours = float(vmf.log_normalizer(d, kappa)) + kappa
    assert np.isfinite(ours)
    if np.isfinite(theirs):  # a future SciPy may fix it; then both must agree
        assert abs(theirs - ours) < 1e-8 * abs(ours)


@pytest.mark.parametrize("phi", [0.0, 0.3, math.pi / 2, math.pi])
def test_two_class_means_angle(phi):
    plus, minus = vmf.two_class_means(7, phi)
    assert abs(float(plus.norm()) - 1) < 1e-15
    assert abs(float(minus.norm()) - 1) < 1e-15
    assert abs(math.acos(max(-1.0, min(1.0, float(plus @ minus)))) - phi) < 1e-7
    assert float(plus[0]) == pytest.approx(math.cos(phi / 2))


def test_two_class_means_rejects_bad_input():
    with pytest.raises(ValueError):
        vmf.two_class_means(1, 0.5)
    with pytest.raises(ValueError):
        vmf.two_class_means(3, 4.0)
    plus, _ = vmf.two_class_means(3, 1.0, dtype=torch.float32)
    assert plus.dtype == torch.float32


@pytest.mark.parametrize("d,kappa", [(3, 2.0), (100, 50.0), (1000, 2000.0)])
def test_fit_recovers_kappa(d, kappa):
    generator = torch.Generator().manual_seed(13)
    mu = torch.randn(d, dtype=torch.float64, generator=generator)
    mu /= mu.norm()
    x = vmf.sample_vmf(mu, kappa, 5000, generator=generator)
    fit = vmf.fit_vmf(x)
    assert abs(fit.kappa / kappa - 1) < 0.05
    assert float(fit.mu @ mu) > 0.99
    assert fit.gamma == pytest.approx(fit.kappa / d)


def test_fit_solves_likelihood_equation():
    x = np.random.default_rng(14).normal(size=(500, 20)) + 0.5
    fit = vmf.fit_vmf(x)
    assert abs(float(vmf.mean_resultant_length(20, fit.kappa)) - fit.mean_resultant) < 1e-12
    assert isinstance(fit.mu, np.ndarray)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        vmf.fit_vmf(np.ones(5))
    with pytest.raises(ValueError, match="zero rows"):
        vmf.fit_vmf(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="same way"):
        vmf.fit_vmf(np.array([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        vmf.fit_vmf(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_w_cdf_matches_mpmath_high_dimension():
    d, kappa = 1000, 100.0
    with mp.workdps(30):
        density = lambda w: mp.exp(kappa * w) * (1 - w * w) ** (mp.mpf(d - 3) / 2)  # noqa: E731
        total = mp.quad(density, [-1, -0.2, 0.0, 0.1, 0.2, 0.4, 1])
        for w in (0.0, 0.05, 0.1, 0.15):
            points = [p for p in (-1, -0.2, 0.0, 0.05, 0.1) if p < w] + [w]
            reference = float(mp.quad(density, points) / total)
            assert abs(float(vmf.w_cdf(w, d, kappa)) / reference - 1) < 1e-10, w
