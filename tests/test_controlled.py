"""Tests of the controlled vMF experiment engine, its storage and its command."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from noisypo import dynamics
from noisypo.__main__ import main
from noisypo.experiments import controlled
from noisypo.experiments.controlled import (
    ControlledConfig,
    draw_datasets,
    exact_accuracy,
    run_controlled,
    sampled_accuracy,
    train_grid,
)
from noisypo.experiments.reference import reference_runs

TINY = ControlledConfig(
    d=5,
    kappas=(4.0, 20.0),
    phi=math.pi / 2,
    ns=(3, 7),
    epsilons=(0.0, 0.2, 0.45, 0.8),
    trials=3,
    test_samples=200,
    beta=0.5,
    lr=2.0,
    epochs=10,
    dtype="float64",
    seed=7,
)


@pytest.fixture(autouse=True)
def fresh_omega_cache(isolated_cache):
    """Give every test an empty on-disk cache of solved omegas."""
    controlled._omega.cache_clear()
    controlled._omega_table.cache_clear()
    yield
    controlled._omega.cache_clear()
    controlled._omega_table.cache_clear()


@pytest.fixture(scope="module")
def tiny_data():
    return [draw_datasets(TINY, kappa) for kappa in TINY.kappas]


# --- The batched engine against per-trial training ---------------------------------


def test_engine_matches_linear_policy_loop(tiny_data):
    n = TINY.ns[1]
    delta = train_grid(TINY, tiny_data, n)  # (L, K, T, E, d)
    trials = range(1)  # one trial per kappa keeps the slow per-run loop short
    for index, item in enumerate(tiny_data):
        reference_delta, reference_accuracy = reference_runs(TINY, item, n, trials)
        np.testing.assert_allclose(delta[:, index, :1].numpy(), reference_delta, rtol=1e-9, atol=1e-12)
        engine_accuracy = sampled_accuracy(item.x_test[:1], delta[:, index, :1]).numpy()
        np.testing.assert_array_equal(engine_accuracy, reference_accuracy)


def test_engine_matches_dynamics_gradient_descent(tiny_data):
    n = TINY.ns[1]
    delta = train_grid(TINY, tiny_data, n)
    for index, item in enumerate(tiny_data):
        x = item.x_train[:, :, :n].reshape(TINY.trials, 1, 2 * n, TINY.d)  # (T, 1, N, d)
        s = item.labels[..., :n].reshape(len(TINY.epsilons), TINY.trials, 2 * n).transpose(0, 1)  # (T, E, N)
        expected = dynamics.gradient_descent(
            x, s, list(TINY.losses), beta=TINY.beta, lr=TINY.lr, steps=TINY.epochs
        ).delta  # (L, T, E, d)
        np.testing.assert_allclose(delta[:, index].numpy(), expected.numpy(), rtol=1e-10, atol=1e-13)


def test_trial_table_rows_match_reference(tiny_data):
    config = TINY.replace(exact=False)
    table = run_controlled(config, progress=False).trials
    n, item = config.ns[0], tiny_data[1]
    _, reference_accuracy = reference_runs(config, item, n, [0, 2])
    for loss_index, loss in enumerate(config.losses):
        for rate_index, epsilon in enumerate(config.epsilons):
            rows = table[(table.n == n) & (table.kappa == item.kappa) & (table.loss == loss) & (table.epsilon == epsilon)]
            rows = rows[rows.trial.isin([0, 2])].sort_values("trial")
            np.testing.assert_array_equal(rows.accuracy_sampled.to_numpy(), reference_accuracy[loss_index, :, rate_index])


def test_result_independent_of_chunking(tiny_data):
    whole = train_grid(TINY, tiny_data, 7)
    pieces = train_grid(TINY, tiny_data, 7, chunk_elements=1)
    np.testing.assert_allclose(whole.numpy(), pieces.numpy(), rtol=1e-13, atol=1e-15)


# --- Common random numbers -----------------------------------------------------------


def test_kappa_data_independent_of_grid(tiny_data):
    alone = draw_datasets(TINY.replace(kappas=(20.0,)), 20.0)
    assert torch.equal(alone.x_train, tiny_data[1].x_train)
    assert torch.equal(alone.x_test, tiny_data[1].x_test)
    assert torch.equal(alone.labels, tiny_data[1].labels)


def test_mislabeled_flips_nested(tiny_data):
    clean = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2, 1)
    flipped = tiny_data[0].labels != clean  # (E, T, 2, n_max)
    for lower, upper in zip(flipped[:-1], flipped[1:]):
        assert bool((lower <= upper).all())


def test_uncertain_flips_nested_and_bayes_at_zero():
    config = TINY.replace(noise="uncertain", epsilons=(0.0, 0.1, 0.3, 0.5), kappas=(30.0,), trials=50)
    item = draw_datasets(config, 30.0)
    mu_plus, mu_minus = controlled._means(config)
    reward = item.x_train @ (mu_plus - mu_minus)  # (T, 2, n_max)
    assert torch.equal(item.labels[0], torch.where(reward >= 0, 1.0, -1.0).to(torch.float64))
    disagree = item.labels != torch.where(reward >= 0, 1.0, -1.0)  # vs the Bayes label
    for lower, upper in zip(disagree[:-1], disagree[1:]):
        assert bool((lower <= upper).all())


def test_omega_cache_reused_across_processes(monkeypatch):
    config = TINY.replace(noise="uncertain", epsilons=(0.2,), kappas=(30.0,))
    first = controlled.noise_levels(config, 30.0)[0]
    controlled._omega.cache_clear()
    controlled._omega_table.cache_clear()

    def fail(*args, **kwargs):
        raise AssertionError("omega solved again despite the cache")

    monkeypatch.setattr(controlled.noise, "omega_for_noise_rate", fail)
    second = controlled.noise_levels(config, 30.0)[0]
    np.testing.assert_array_equal(first, second)


def test_uncertain_flip_fraction_matches_noise_rate():
    config = TINY.replace(noise="uncertain", epsilons=(0.1, 0.3), kappas=(30.0,), ns=(400,), trials=50, exact=False)
    table = run_controlled(config, progress=False).trials
    for epsilon in config.epsilons:
        rows = table[(table.epsilon == epsilon) & (table.loss == "dpo")]
        standard_error = math.sqrt(epsilon * (1 - epsilon) / (len(rows) * 2 * 400))
        assert abs(rows.flip_fraction.mean() - epsilon) < 4 * standard_error


def test_antithetic_grid_symmetric_per_trial():
    config = TINY.replace(epsilons=(0.2, 0.8), antithetic=True, kappas=(20.0,))
    item = draw_datasets(config, 20.0)
    delta = train_grid(config, [item], 7)[:, 0]  # (L, T, E, d)
    assert torch.equal(delta[..., 1, :], -delta[..., 0, :])
    accuracy = exact_accuracy(config, 20.0, delta)
    np.testing.assert_allclose(accuracy[..., 0] + accuracy[..., 1], 1.0, atol=1e-12)


# --- Exact and sampled accuracy -----------------------------------------------------


def test_exact_and_sampled_accuracy_agree():
    config = ControlledConfig(
        d=16, kappas=(8.0, 32.0), phi=math.pi / 3, ns=(10,), epsilons=(0.0, 0.2, 0.4),
        trials=30, test_samples=2000, dtype="float64", seed=3,
    )
    results = run_controlled(config, progress=False)
    summary, trials = results.summary, results.trials
    grouped = trials.groupby(["kappa", "loss", "epsilon"])
    # Given the boundary, each sampled accuracy averages two binomial
    # proportions whose means are given by the exact per-class risks; their
    # variance is at most p (1 - p) / M for the overall accuracy p.
    for key, rows in grouped:
        p = rows.accuracy_exact.to_numpy()
        variance = np.sum(p * (1 - p)) / config.test_samples
        difference = np.sum(rows.accuracy_sampled.to_numpy() - p)
        assert abs(difference) <= 4 * math.sqrt(variance) + 1e-12, key
    assert len(summary) == 2 * 3 * 3


# --- Storage and resumption ---------------------------------------------------------


def test_resume_skips_finished_configurations(tmp_path, monkeypatch):
    config = TINY.replace(exact=False)
    first = run_controlled(config, tmp_path / "run", progress=False)
    calls = []
    original = controlled.train_grid

    def counting_train_grid(config, data, n, **options):
        calls.append((n, tuple(item.kappa for item in data)))
        return original(config, data, n, **options)

    monkeypatch.setattr(controlled, "train_grid", counting_train_grid)
    second = run_controlled(config, tmp_path / "run", progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(first.trials, second.trials)


def test_resume_reruns_only_missing_part(tmp_path, monkeypatch):
    config = TINY.replace(exact=False)
    first = run_controlled(config, tmp_path / "run", progress=False)
    (tmp_path / "run" / "parts" / "n=7_kappa=4.0.parquet").unlink()
    calls = []
    original = controlled.train_grid

    def counting_train_grid(config, data, n, **options):
        calls.append((n, tuple(item.kappa for item in data)))
        return original(config, data, n, **options)

    monkeypatch.setattr(controlled, "train_grid", counting_train_grid)
    second = run_controlled(config, tmp_path / "run", progress=False)
    assert calls == [(7, (4.0,))]
    pd.testing.assert_frame_equal(first.trials, second.trials)


def test_store_rejects_other_config(tmp_path):
    run_controlled(TINY.replace(exact=False), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="another config"):
        run_controlled(TINY.replace(exact=False, seed=8), tmp_path / "run", progress=False)


def test_sidecar_records_config_and_versions(tmp_path):
    run_controlled(TINY.replace(exact=False), tmp_path / "run", progress=False)
    sidecar = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sidecar["config"]["seed"] == 7
    assert "torch" in sidecar["versions"]
    assert sidecar["device"].startswith("cpu")
    assert sidecar["finished"] is not None
    assert (tmp_path / "run" / "summary.csv").exists()


# --- Config validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d": 2}, "invalid d"),
        ({"d": 3.5}, "invalid d"),
        ({"kappas": ()}, "kappas is empty"),
        ({"kappas": (-1.0,)}, "invalid kappas"),
        ({"kappas": (4.0, 4.0)}, "distinct"),
        ({"phi": 0.0}, "invalid phi"),
        ({"phi": 4.0}, "invalid phi"),
        ({"ns": (0,)}, "invalid ns"),
        ({"epsilons": (1.2,)}, "invalid epsilon"),
        ({"noise": "uncertain", "epsilons": (0.7,)}, "uncertain"),
        ({"noise": "gaussian"}, "invalid noise"),
        ({"losses": ("hinge2",)}, "dpo"),
        ({"trials": 0}, "invalid trials"),
        ({"test_samples": 3}, "even"),
        ({"lr": 0.0}, "invalid lr"),
        ({"beta": float("nan")}, "invalid beta"),
        ({"epochs": 0}, "invalid epochs"),
        ({"dtype": "float16"}, "invalid dtype"),
        ({"device": "not-a-device"}, "invalid device"),
        ({"noise": "uncertain", "antithetic": True, "epsilons": (0.1,)}, "antithetic"),
    ],
)
def test_config_rejects_invalid(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_uncertain_rejects_rate_below_bayes_risk():
    config = TINY.replace(noise="uncertain", kappas=(1.0,), epsilons=(0.01,))
    with pytest.raises(ValueError, match="Bayes risk"):
        draw_datasets(config, 1.0)


# --- The command line ---------------------------------------------------------------------


def test_cli_writes_results(tmp_path):
    status = main([
        "controlled", "--profile", "ci", "--out", str(tmp_path), "--noise", "uncertain",
        "--sweep", "n", "--trials", "2", "--no-exact", "--no-progress", "--device", "cpu",
    ])
    assert status == 0
    summary = pd.read_csv(tmp_path / "uncertain-n" / "summary.csv")
    assert set(summary.loss) == {"dpo", "ipo", "slic"}
    assert summary.trials.eq(2).all()
