"""Tests of the noise-tolerance diagnostic and its command."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from noisypo import diagnose as dg
from noisypo.__main__ import main
from noisypo.risk import population_risk
from noisypo.vmf import sample_vmf, two_class_means


def vmf_data(d=24, kappa=50.0, phi=0.9, n_plus=80, n_minus=60, seed=1):
    mu_plus, mu_minus = two_class_means(d, phi)
    generator = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [sample_vmf(mu_plus, kappa, n_plus, generator=generator), sample_vmf(mu_minus, kappa, n_minus, generator=generator)]
    ).numpy()
    labels = np.array([1] * n_plus + [-1] * n_minus)
    return x, labels


# --- input validation -----------------------------------------------------------------


def test_mismatched_lengths_rejected():
    x, labels = vmf_data()
    with pytest.raises(dg.DiagnosticInputError, match="mismatched lengths: 140 embeddings but 139 labels"):
        dg.check_embeddings(x, labels[:-1])


def test_single_class_rejected():
    x, _ = vmf_data()
    with pytest.raises(dg.DiagnosticInputError, match="only one class present"):
        dg.check_embeddings(x, np.ones(len(x)))


def test_non_finite_embeddings_rejected():
    x, labels = vmf_data()
    x[7, 2] = np.inf
    with pytest.raises(dg.DiagnosticInputError, match="NaN or inf in 1 row.*row 7"):
        dg.check_embeddings(x, labels)


def test_non_finite_labels_rejected():
    x, labels = vmf_data()
    labels = labels.astype(float)
    labels[3] = np.nan
    with pytest.raises(dg.DiagnosticInputError, match="non-finite"):
        dg.check_embeddings(x, labels)


def test_too_few_samples_rejected():
    x, labels = vmf_data(n_plus=5, n_minus=30)
    with pytest.raises(dg.DiagnosticInputError, match="5 with label \\+1; need at least 10"):
        dg.check_embeddings(x, labels)
    assert dg.check_embeddings(x, labels, min_per_class=5)[1].shape == (35,)


def test_non_binary_labels_rejected():
    x, labels = vmf_data()
    labels = labels.copy()
    labels[0] = 2
    with pytest.raises(dg.DiagnosticInputError, match="labels must take the values"):
        dg.check_embeddings(x, labels)


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((10, 2)), np.zeros((2, 3, 4))])
def test_bad_embedding_shape_rejected(bad):
    with pytest.raises(dg.DiagnosticInputError):
        dg.check_embeddings(bad, np.array([1, -1] * 5))


def test_zero_row_rejected():
    x, labels = vmf_data()
    x[4] = 0.0
    with pytest.raises(dg.DiagnosticInputError, match="row 4 is zero"):
        dg.check_embeddings(x, labels)


def test_labels_zero_one_and_bool_map_to_signs():
    x, labels = vmf_data()
    _, from_01 = dg.check_embeddings(x, (labels > 0).astype(int))
    _, from_bool = dg.check_embeddings(x, labels > 0)
    np.testing.assert_array_equal(from_01, labels)
    np.testing.assert_array_equal(from_bool, labels)


# --- geometry and predictions ------------------------------------------------------------


def test_fit_geometry_recovers_kappa_and_phi():
    x, labels = vmf_data(d=32, kappa=64.0, phi=1.0, n_plus=600, n_minus=600)
    geometry = dg.fit_geometry(x, labels)
    assert geometry.kappa == pytest.approx(64.0, rel=0.05)
    assert geometry.phi == pytest.approx(1.0, rel=0.03)
    assert geometry.gamma == pytest.approx(geometry.kappa / 32)
    assert geometry.spread_ratio == pytest.approx(1.0, abs=0.15)


def test_bias_correction_beats_mle_for_small_n():
    # With n close to d the sample mean is too long and the MLE overstates kappa.
    x, labels = vmf_data(d=64, kappa=40.0, phi=1.0, n_plus=40, n_minus=40, seed=3)
    geometry = dg.fit_geometry(x, labels)
    assert abs(geometry.kappa_plus - 40.0) < abs(geometry.kappa_plus_mle - 40.0)
    assert geometry.kappa_plus_mle > 40.0


def test_predicted_accuracy_matches_simulated_first_boundary():
    d, kappa, phi, n, trials = 16, 30.0, 0.8, 60, 400
    geometry = dg.Geometry(d, n, n, kappa, kappa, kappa, phi, kappa, kappa, phi, 1.0)
    epsilons = [0.0, 0.2, 0.4]
    predicted = dg.predicted_accuracy(geometry, epsilons, draws=4000)

    mu_plus, mu_minus = two_class_means(d, phi)
    generator = torch.Generator().manual_seed(5)
    x = torch.cat(
        [
            sample_vmf(mu_plus, kappa, n * trials, generator=generator).reshape(trials, n, d),
            sample_vmf(mu_minus, kappa, n * trials, generator=generator).reshape(trials, n, d),
        ],
        dim=1,
    )  # (T, 2n, d)
    clean = torch.cat([torch.ones(n), -torch.ones(n)]).to(torch.float64).expand(trials, 2 * n)
    for epsilon, value in zip(epsilons, predicted):
        flips = torch.rand(trials, 2 * n, generator=generator) < epsilon
        m = (torch.where(flips, -clean, clean)[..., None] * x).mean(dim=1)  # (T, d)
        simulated = 1 - population_risk(m.numpy(), mu_plus.numpy(), mu_minus.numpy(), kappa).mean()
        assert value == pytest.approx(simulated, abs=0.02), epsilon


def test_predicted_accuracy_decreases_to_half():
    x, labels = vmf_data()
    geometry = dg.fit_geometry(x, labels)
    accuracy = dg.predicted_accuracy(geometry, np.linspace(0, 0.5, 11))
    assert np.all(np.diff(accuracy) < 0)
    assert accuracy[-1] == pytest.approx(0.5, abs=0.01)


def test_guaranteed_below_predicted():
    x, labels = vmf_data(d=16, kappa=80.0, phi=1.2, n_plus=2000, n_minus=2000)
    report = dg.diagnose(x, labels, threshold=0.8, draws=1000)
    assert np.all(report.guaranteed <= report.predicted + 1e-9)
    assert report.guaranteed[0] > 0.5


def test_train_fraction_lowers_accuracy_under_noise():
    x, labels = vmf_data()
    geometry = dg.fit_geometry(x, labels)
    full = dg.predicted_accuracy(geometry, [0.3], train_fraction=1.0)
    part = dg.predicted_accuracy(geometry, [0.3], train_fraction=0.2)
    assert part[0] < full[0]


def test_noise_tolerance_interpolates():
    epsilons = np.array([0.0, 0.1, 0.2, 0.3])
    accuracy = np.array([0.95, 0.92, 0.86, 0.7])
    assert dg.noise_tolerance(epsilons, accuracy, 0.9) == pytest.approx(0.1 + 0.02 / 0.06 * 0.1)
    assert math.isnan(dg.noise_tolerance(epsilons, accuracy, 0.96))
    assert dg.noise_tolerance(epsilons, accuracy, 0.5) == 0.3


def test_diagnose_rejects_bad_parameters():
    x, labels = vmf_data()
    with pytest.raises(ValueError, match="invalid threshold"):
        dg.diagnose(x, labels, threshold=1.0)
    with pytest.raises(ValueError, match="invalid epsilons"):
        dg.diagnose(x, labels, epsilons=[0.0, 0.7])
    with pytest.raises(ValueError, match="invalid train_fraction"):
        dg.diagnose(x, labels, train_fraction=0.0)


# --- files and the command ----------------------------------------------------------------


@pytest.fixture()
def files(tmp_path):
    x, labels = vmf_data()
    np.savez(tmp_path / "data.npz", x=x, labels=labels)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "labels.txt", labels, fmt="%d")
    pd.DataFrame({"embedding": list(x), "label": labels}).to_parquet(tmp_path / "list.parquet")
    wide = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).assign(label=labels)
    wide.to_parquet(tmp_path / "wide.parquet")
    return tmp_path, x, labels


@pytest.mark.parametrize("name", ["data.npz", "list.parquet", "wide.parquet"])
def test_load_embeddings_formats(files, name):
    folder, x, labels = files
    data = dg.load_embeddings(folder / name)
    np.testing.assert_allclose(data.x, x)
    np.testing.assert_array_equal(data.labels, labels)


def test_load_npy_needs_labels(files):
    folder, x, labels = files
    with pytest.raises(dg.DiagnosticInputError, match="pass the labels file"):
        dg.load_embeddings(folder / "x.npy")
    data = dg.load_embeddings(folder / "x.npy", labels=folder / "labels.txt")
    np.testing.assert_array_equal(data.labels, labels)


def test_load_missing_file_and_unknown_name(files):
    folder, _, _ = files
    with pytest.raises(dg.DiagnosticInputError, match="not found"):
        dg.load_embeddings(folder / "missing.npz")
    with pytest.raises(dg.DiagnosticInputError, match="neither an embedding file"):
        dg.load_embeddings("no-such-behaviour")
    with pytest.raises(dg.DiagnosticInputError, match="no label array named 'y'"):
        dg.load_embeddings(folder / "data.npz", labels_key="y")


def test_cli_reports_and_writes_files(files, capsys):
    folder, _, _ = files
    status = main(
        ["diagnose", str(folder / "data.npz"), "--threshold", "0.8", "--draws", "500",
         "--plot", str(folder / "plot.png"), "--json", str(folder / "report.json")]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "gamma = kappa/d" in out
    assert "noise tolerance at accuracy >= 0.8" in out
    assert (folder / "plot.png").stat().st_size > 0
    report = json.loads((folder / "report.json").read_text())
    assert report["geometry"]["n"] == 140
    assert 0 < report["tolerance"] < 0.5


def test_cli_error_exit_status(files, capsys):
    folder, x, labels = files
    np.savez(folder / "short.npz", x=x, labels=labels[:-1])
    status = main(["diagnose", str(folder / "short.npz")])
    assert status == 2
    assert "mismatched lengths" in capsys.readouterr().err


# --- effective dimension -----------------------------------------------------------------


def stretched_data(stretch, seed=0):
    mu_plus, mu_minus = two_class_means(32, math.pi / 6)
    generator = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [sample_vmf(mu_plus, 200.0, 400, generator=generator), sample_vmf(mu_minus, 200.0, 400, generator=generator)]
    ).numpy()
    labels = np.array([1] * 400 + [-1] * 400)
    u = (mu_plus - mu_minus).numpy()
    u /= np.linalg.norm(u)
    y = x + (stretch - 1) * np.outer((x - x.mean(0)) @ u, u)
    return y, labels


def first_boundary_accuracy(x, labels):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    m = (labels[:, None] * unit).mean(axis=0)
    return float(((unit @ m) * labels > 0).mean())


def test_effective_geometry_keeps_isotropic_data():
    x, labels = vmf_data(d=32, kappa=64.0, phi=1.0, n_plus=600, n_minus=600)
    geometry = dg.fit_geometry(x, labels)
    assert dg.effective_geometry(geometry).d >= 24


def test_effective_geometry_shrinks_dimension_for_stretched_data():
    geometry = dg.fit_geometry(*stretched_data(4.0))
    model = dg.effective_geometry(geometry)
    assert geometry.spread_ratio > 4
    assert model.d < geometry.d / 4
    assert model.spread_ratio == pytest.approx(1.0, abs=0.3)


def test_effective_prediction_closer_on_stretched_data():
    x, labels = stretched_data(4.0)
    measured = first_boundary_accuracy(x, labels)
    effective = dg.diagnose(x, labels, draws=1000, dimension="effective").predicted[0]
    ambient = dg.diagnose(x, labels, draws=1000, dimension="ambient").predicted[0]
    assert abs(effective - measured) < abs(ambient - measured)
    assert ambient > measured


def test_diagnose_rejects_unknown_dimension():
    x, labels = vmf_data()
    with pytest.raises(ValueError, match="invalid dimension"):
        dg.diagnose(x, labels, dimension="fractal")


def test_required_samples_grow_like_inverse_square():
    geometry = dg.Geometry(16, 500, 500, 80.0, 80.0, 80.0, 1.2, 80.0, 80.0, 1.2, 1.0)
    required = dg.required_samples(geometry, [0.0, 0.25, 0.5], threshold=0.8)
    assert required[0] > 0
    assert 3.0 < required[1] / required[0] < 5.0
    assert math.isinf(required[2])


def test_sample_size_tolerance_reported():
    x, labels = vmf_data(d=16, kappa=80.0, phi=1.2, n_plus=3000, n_minus=3000)
    report = dg.diagnose(x, labels, threshold=0.8, draws=500)
    holds = report.required_n <= report.n_train
    assert report.n_train == 3000
    assert holds[0]
    assert report.sample_size_tolerance == report.epsilons[np.flatnonzero(holds)[-1]]


def test_load_persona_behaviour_from_cache(persona_dir):
    from noisypo.embeddings import cache_path

    if not cache_path("Behavior 1", limit=64).is_file():
        pytest.skip("no cached embeddings of 'Behavior 1' with limit 64; computing them needs the model")
    data = dg.load_embeddings("Behavior 1", limit=64)
    assert data.x.shape[0] == 64
    assert set(np.unique(data.labels).tolist()) == {-1, 1}
    assert data.source.startswith("persona:desire-to-remove-safety-precautions")


def test_cli_rejects_non_numpy_file(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not an archive")
    assert main(["diagnose", str(bad)]) == 2
    assert "not a valid .npz file" in capsys.readouterr().err


def test_cli_checks_train_fraction_before_loading(tmp_path, capsys):
    # The source does not exist: the option must be rejected before any loading.
    assert main(["diagnose", str(tmp_path / "missing.npz"), "--train-fraction", "1.5"]) == 2
    assert "--train-fraction" in capsys.readouterr().err
