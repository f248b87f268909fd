"""Tests of noisypo.embeddings: subsampling, statistics, cache and the real SmolLM2 states."""

from __future__ import annotations

import numpy as np
import pytest

from noisypo import embeddings, persona, prompts


def test_stratified_indices_keep_proportions():
    labels = np.array([1] * 300 + [-1] * 700)
    chosen = embeddings.stratified_indices(labels, 100, seed=0)
    assert chosen.size == 100
    assert int((labels[chosen] == 1).sum()) == 30
    assert np.all(np.diff(chosen) > 0)


def test_stratified_indices_seeded():
    labels = np.array([1, -1] * 50)
    first = embeddings.stratified_indices(labels, 10, seed=3)
    assert np.array_equal(first, embeddings.stratified_indices(labels, 10, seed=3))
    assert not np.array_equal(first, embeddings.stratified_indices(labels, 10, seed=4))


def test_stratified_indices_all_and_errors():
    labels = np.array([1, -1, 1])
    assert np.array_equal(embeddings.stratified_indices(labels, None, 0), [0, 1, 2])
    assert np.array_equal(embeddings.stratified_indices(labels, 10, 0), [0, 1, 2])
    with pytest.raises(ValueError, match="limit must be >= 2"):
        embeddings.stratified_indices(np.array([1, -1] * 5), 1, 0)


def test_statistics_on_known_data():
    # Class +1: two rows at 45 degrees on either side of e1. Class -1: two rows along -e2.
    x = np.array([[3.0, 3.0], [3.0, -3.0], [0.0, -2.0], [0.0, -4.0]])
    labels = np.array([1, 1, -1, -1])
    stats = embeddings.norm_cosine_statistics(x, labels)
    norms = np.array([np.sqrt(18), np.sqrt(18), 2.0, 4.0])
    assert stats["mean_norm"] == pytest.approx(norms.mean())
    assert stats["norm_variance"] == pytest.approx(norms.var())
    cosines = np.array([np.sqrt(0.5), np.sqrt(0.5), 1.0, 1.0])
    assert stats["mean_cosine"] == pytest.approx(cosines.mean())
    assert stats["cosine_variance"] == pytest.approx(cosines.var())


def test_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        embeddings.norm_cosine_statistics(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="labels"):
        embeddings.norm_cosine_statistics(np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="zero row"):
        embeddings.norm_cosine_statistics(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([1, 1]))
    with pytest.raises(ValueError, match="at least 2"):
        embeddings.norm_cosine_statistics(np.eye(3), np.array([1, 1, -1]))


def test_cache_path_keys():
    base = embeddings.cache_path("Behavior 1", limit=32, seed=0)
    assert "desire-to-remove-safety-precautions" in base.name
    assert base != embeddings.cache_path("Behavior 1", limit=32, seed=1)
    assert base != embeddings.cache_path("Behavior 1", limit=64, seed=0)
    assert base != embeddings.cache_path("Behavior 1", "org/other-model", limit=32, seed=0)
    assert prompts.TEMPLATE_NAME in base.name


def test_unknown_behaviour_rejected(persona_dir):
    with pytest.raises(ValueError, match="unknown persona behaviour"):
        embeddings.persona_embeddings("no-such-behaviour", limit=4)


@pytest.fixture
def tmp_embedding_cache(tmp_path, monkeypatch):
    """Keep embedding files in a temporary folder but reuse the converted model."""
    real = embeddings.cache_dir

    def fake(*parts):
        if parts and parts[0] == "embeddings":
            path = tmp_path.joinpath(*parts)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return real(*parts)

    monkeypatch.setattr(embeddings, "cache_dir", fake)
    return tmp_path


@pytest.mark.llm
def test_real_embeddings_and_cache(persona_dir, tmp_embedding_cache, monkeypatch, capsys):
    data = embeddings.persona_embeddings("Behavior 2", limit=6, seed=5, batch_size=4)
    records = persona.load_behaviour("Behavior 2")
    assert data.x.shape == (6, 576)
    assert data.x.dtype == np.float32
    assert data.labels.dtype == np.int8
    assert np.array_equal(data.labels, [records[i].label for i in data.indices])
    assert data.questions == [records[i].question for i in data.indices]
    assert np.isfinite(data.x).all()
    assert embeddings.cache_path("Behavior 2", limit=6, seed=5).is_file()

    # A second call must read the cache and never load the model.
    import noisypo.models

    def refuse(*args, **kwargs):
        raise AssertionError("model loaded although the cache exists")

    monkeypatch.setattr(noisypo.models, "load_causal_lm", refuse)
    again = embeddings.persona_embeddings("Behavior 2", limit=6, seed=5)
    assert np.array_equal(again.x, data.x)

    # The command-line entry point reads the same cache file.
    from noisypo.__main__ import main

    assert main(["embed", "--behaviour", "Behavior 2", "--limit", "6", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    stats = embeddings.norm_cosine_statistics(data.x, data.labels)
    assert f"mean_norm={stats['mean_norm']:.6g}" in printed


@pytest.mark.llm
def test_batched_states_match_single_prompts():
    from noisypo.models import load_causal_lm

    model, tokenizer = load_causal_lm(device="cpu")
    texts = [prompts.format_prompt(q) for q in ("Is the sky blue?", "Do you like long walks on the beach at night?")]
    batched = embeddings.embed_prompts(model, tokenizer, texts, batch_size=2)
    single = np.stack([embeddings.embed_prompts(model, tokenizer, [t], batch_size=1)[0] for t in texts])
    assert np.allclose(batched, single, atol=1e-3 * np.abs(single).max())

    # The state is the final norm's output at the last prompt token.
    import torch

    ids = tokenizer(texts[1], return_tensors="pt")["input_ids"]
    captured = {}
    hook = model.model.norm.register_forward_hook(lambda mod, inp, out: captured.setdefault("y", out))
    with torch.inference_mode():
        model(input_ids=ids)
    hook.remove()
    assert np.allclose(single[1], captured["y"][0, -1].numpy(), atol=1e-5)
