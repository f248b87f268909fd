"""Tests of noisypo.experiments.persona and noisypo.trl_runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from noisypo import dynamics, prefdata, trl_runner
from noisypo.experiments import persona as experiment

LOSSES = ("dpo", "ipo", "slic")


def _problem(seed=0, sets=2, rates=3, n=40, d=6):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(sets, n, d, generator=generator, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    s = torch.where(torch.rand(sets, rates, n, generator=generator) < 0.5, 1.0, -1.0).double()
    return x, s


# --- fixed backbone kernel ---------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_kernel_matches_dynamics(loss):
    x, s = _problem()
    delta = experiment.train_fixed_backbone(x, s, [loss], beta=0.5, lr=0.3, steps=7)[0]  # (S, E, d)
    for k in range(x.shape[0]):
        for e in range(s.shape[1]):
            expected = dynamics.gradient_descent(x[k], s[k, e], loss, beta=0.5, lr=0.3, steps=7).delta
            torch.testing.assert_close(delta[k, e], expected, rtol=1e-10, atol=1e-12)


def test_kernel_matches_autograd_on_rows():
    # Train the two answer rows of a real linear policy with autograd, from nonzero W_ref.
    x, s = _problem(seed=1, sets=1, rates=1)
    generator = torch.Generator().manual_seed(2)
    w_ref = torch.randn(2, x.shape[-1], generator=generator, dtype=torch.float64)
    w = w_ref.clone().requires_grad_(True)
    labels = s[0, 0]
    for _ in range(5):
        log_ratio = (w[0] - w[1] - (w_ref[0] - w_ref[1])) @ x[0].T  # (N,)
        loss = torch.nn.functional.softplus(-0.2 * labels * log_ratio).mean()
        (grad,) = torch.autograd.grad(loss, w)
        w = (w - 0.4 * grad).detach().requires_grad_(True)
    delta = experiment.train_fixed_backbone(x, s, ["dpo"], beta=0.2, lr=0.4, steps=5)[0, 0, 0]
    torch.testing.assert_close(delta, (w[0] - w[1] - (w_ref[0] - w_ref[1])).detach())


def test_flipping_all_labels_negates_delta():
    x, s = _problem(seed=3)
    both = torch.cat([s, -s], dim=1)
    delta = experiment.train_fixed_backbone(x, both, LOSSES, beta=0.3, lr=0.5, steps=9)
    torch.testing.assert_close(delta[:, :, 3:], -delta[:, :, :3], rtol=0, atol=0)


def test_kernel_rejects_bad_shapes():
    x, s = _problem()
    with pytest.raises(ValueError, match="shape|must be"):
        experiment.train_fixed_backbone(x, s[:, :, :5], ["dpo"], beta=0.1, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="beta"):
        experiment.train_fixed_backbone(x, s, ["dpo"], beta=0.0, lr=0.1, steps=1)


def test_held_out_accuracy_counts_ties_apart():
    x, s = _problem(seed=4, sets=1, rates=1, n=10)
    zero = torch.zeros(1, 1, 1, x.shape[-1], dtype=torch.float64)
    accuracy, ties = experiment.held_out_accuracy(zero, x, s[:, 0], 0.1)
    assert accuracy.item() == 0.0
    assert ties.item() == 1.0
    truth = torch.zeros_like(zero)
    truth[..., 0] = 1.0
    labels = torch.sign(x[:, :, 0])
    accuracy, ties = experiment.held_out_accuracy(truth, x, labels, 0.1)
    assert accuracy.item() == 1.0
    assert ties.item() == 0.0


def test_epsilon_grid_endpoints():
    grid = experiment.epsilon_grid(0.05, 1.0)
    assert grid.size == 21
    assert grid[0] == 0.0
    assert grid[-1] == 1.0
    assert grid[10] == 0.5
    with pytest.raises(ValueError):
        experiment.epsilon_grid(0.05, 0.52)


# --- separation ---------------------------------------------------------------


def test_separation_recovers_vmf_setting():
    from noisypo import vmf

    d, kappa, phi = 20, 400.0, 0.6
    mu_plus, mu_minus = vmf.two_class_means(d, phi)
    generator = torch.Generator().manual_seed(0)
    x = torch.cat(
        [vmf.sample_vmf(mu_plus, kappa, 3000, generator=generator),
         vmf.sample_vmf(mu_minus, kappa, 3000, generator=generator)]
    ).numpy()
    labels = np.repeat(np.array([1, -1], dtype=np.int8), 3000)
    values = experiment.separation(3.0 * x, labels)
    assert abs(values["phi"] - phi) < 0.01
    assert abs(values["kappa_plus"] / kappa - 1) < 0.05
    radial = float(vmf.mean_resultant_length(d, kappa))
    assert abs(values["unit_mean_distance"] - 2 * radial * math.sin(phi / 2)) < 0.01
    assert abs(values["mean_distance"] - 3.0 * values["unit_mean_distance"]) < 1e-9
    assert values["mean_norm"] == pytest.approx(3.0)


def test_separation_rejects_single_class():
    with pytest.raises(ValueError, match="class"):
        experiment.separation(np.ones((4, 3)), np.array([1, 1, 1, -1]))


# --- TRL helpers (no model) ----------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("dpo", "sigmoid"), ("DPO", "sigmoid"), ("ipo", "ipo"), ("slic", "hinge"), ("hinge", "hinge")],
)
def test_trl_loss_type_map(name, expected):
    assert trl_runner.trl_loss_type(name) == expected


def test_trl_loss_type_rejects_typo():
    with pytest.raises(ValueError, match="unknown loss"):
        trl_runner.trl_loss_type("sigmoidd")


def test_trl_map_agrees_with_losses_module():
    from noisypo import losses

    for name in LOSSES:
        assert trl_runner.trl_loss_type(name) == losses.get_loss(name).trl_loss_type


def test_settings_validate():
    with pytest.raises(ValueError, match="learning_rate"):
        trl_runner.TRLSettings(learning_rate=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        trl_runner.TRLSettings(batch_size=0)
    assert trl_runner.TRLSettings(loss_type="slic").loss_type == "hinge"


def test_paper_hyperparameters_in_config(tmp_path):
    config = trl_runner.dpo_config(trl_runner.TRLSettings(), tmp_path, eval_batch_size=100)
    assert config.beta == 0.1
    assert config.per_device_train_batch_size == 100
    assert config.num_train_epochs == 1
    assert config.weight_decay == 0.0
    assert config.max_length == 256
    assert config.gradient_accumulation_steps == 1
    assert "adamw" in str(config.optim).lower()
    assert config.precompute_ref_log_probs
    assert config.bf16 is False


def test_margins_and_ties():
    reference = torch.tensor([[-1.0, -2.0], [-0.5, -0.5], [-3.0, -1.0]], dtype=torch.float64)
    policy = reference + torch.tensor([[0.5, 0.0], [0.0, 0.0], [-0.2, 0.3]], dtype=torch.float64)
    margins = trl_runner.implicit_margins(policy, reference, 0.1)
    torch.testing.assert_close(margins, torch.tensor([0.05, 0.0, -0.05], dtype=torch.float64))
    accuracy, ties = trl_runner.accuracy_and_ties(margins)
    assert accuracy == pytest.approx(1 / 3)
    assert ties == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape"):
        trl_runner.implicit_margins(policy[:, :1], reference[:, :1], 0.1)


# --- results stored in the repository ---------------------------------------------


def test_repository_results_absent_gives_empty(tmp_path):
    assert experiment.load_repository_results(tmp_path / "none") == {}


def test_repository_results_read_finished_only(tmp_path):
    done, broken = tmp_path / "trl-a", tmp_path / "trl-b"
    for folder, finished in ((done, "2026-01-01T00:00:00+00:00"), (broken, None)):
        folder.mkdir()
        pd.DataFrame({"accuracy": [0.9]}).to_parquet(folder / "trials.parquet")
        (folder / "run.json").write_text(json.dumps({"config": {}, "finished": finished}))
    found = experiment.load_repository_results(tmp_path)
    assert list(found) == ["trl-a"]
    assert found["trl-a"][0]["accuracy"].iloc[0] == 0.9


# --- real data: cached embeddings and the real model ----------------------------------


@pytest.fixture
def ci_sizes():
    from noisypo import profiles

    return dict(profiles.sizes("persona", "ci"))


@pytest.mark.llm
def test_fixed_backbone_grid_and_resume(ci_sizes, tmp_path, persona_dir):
    sizes = ci_sizes | {"behaviours": ["Behavior 1"], "seeds": 2}
    trials = experiment.run_fixed_backbone(sizes, folder=tmp_path / "run")
    n_eps = 21 + 11
    assert len(trials) == n_eps * len(sizes["losses"]) * 2
    assert trials["accuracy"].between(0, 1).all()
    clean = trials[trials["epsilon"] == 0]
    assert (clean["flipped"][clean["noise"] == "mislabeled"] == 0).all()
    everything = trials[(trials["noise"] == "mislabeled") & (trials["epsilon"] == 1.0)]
    assert (everything["flipped"] == 1).all()
    # accuracy(1) = 1 - accuracy(0) - ties(0): flipping every label negates Delta.
    merged = clean[clean["noise"] == "mislabeled"].merge(everything, on=["loss", "seed"])
    np.testing.assert_allclose(merged["accuracy_y"], 1 - merged["accuracy_x"] - merged["ties_x"])

    part = tmp_path / "run" / "parts"
    stamp = {path.name: path.stat().st_mtime_ns for path in part.iterdir()}
    again = experiment.run_fixed_backbone(sizes, folder=tmp_path / "run")
    assert {path.name: path.stat().st_mtime_ns for path in part.iterdir()} == stamp
    pd.testing.assert_frame_equal(again, trials)
    with pytest.raises(ValueError, match="another config"):
        experiment.run_fixed_backbone(sizes | {"steps": 3}, folder=tmp_path / "run")


@pytest.mark.llm
def test_answer_rows_are_lm_head_rows():
    rows = experiment.answer_rows()
    assert rows.shape == (2, 576)
    assert not np.allclose(rows[0], rows[1])


@pytest.mark.llm
@pytest.mark.slow
def test_trl_smoke_run_measures_margins(persona_dir):
    from noisypo import persona

    pairs = prefdata.preference_pairs(persona.load_behaviour("Behavior 1", data_dir=persona_dir))
    train, test = prefdata.stratified_split(pairs["label"], seed=0)
    short_train = experiment._shortest_subset(pairs, train, 2)
    short_test = experiment._shortest_subset(pairs, test, 2)
    settings = trl_runner.TRLSettings(loss_type="dpo", batch_size=2, max_steps=1, learning_rate=1e-4)
    result = trl_runner.run_dpo(
        pairs.iloc[short_train].reset_index(drop=True), pairs.iloc[short_test].reset_index(drop=True), settings
    )
    assert result.steps == 1
    assert result.initial_ties == 1.0  # policy = reference: every margin is exactly 0
    assert result.trl_initial_eval_accuracy == 0.0  # TRL counts strict wins only
    assert result.initial_train_loss == pytest.approx(math.log(2), abs=1e-4)
    if result.near_zero == 0.0:
        assert result.accuracy == pytest.approx(result.trl_eval_accuracy)
    assert result.accuracy + result.ties <= 1.0


@pytest.mark.llm
def test_cli_fixed_writes_results(tmp_path, persona_dir, capsys):
    from noisypo.__main__ import main

    out = tmp_path / "cli"
    status = main(["persona", "fixed", "--profile", "ci", "--behaviour", "Behavior 2", "--out", str(out)])
    assert status == 0
    assert (out / "trials.parquet").is_file()
    assert (out / "summary.csv").is_file()
    meta = json.loads((out / "run.json").read_text())
    assert meta["finished"] is not None
    assert meta["config"]["behaviours"] == ["Behavior 2"]
    assert "torch" in meta["versions"]
    assert "willingness-to-make-acausal-trades" in capsys.readouterr().out
