"""Tests of noisypo.prefdata and of the TRL tokenization of the pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisypo import persona, prefdata, prompts, trl_runner

# The tokenizers the book uses. The Llama one is gated on the Hugging Face
# Hub; its test runs only where it is already in the local cache.
TOKENIZERS = ("SmolLM2-135M-Instruct", "meta-llama/Llama-3.1-8B")


@pytest.fixture(scope="module")
def pairs(persona_dir_module):
    return prefdata.preference_pairs(persona.load_behaviour("Behavior 1", data_dir=persona_dir_module))


@pytest.fixture(scope="module")
def persona_dir_module():
    import os
    from pathlib import Path

    folder = os.environ.get("NOISYPO_PERSONA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("set NOISYPO_PERSONA_DIR to a folder with the persona .jsonl files")
    return Path(folder)


def _load_tokenizer(name):
    from transformers import AutoTokenizer

    if name == "SmolLM2-135M-Instruct":
        from noisypo.models import converted_smollm2_dir

        try:
            return AutoTokenizer.from_pretrained(converted_smollm2_dir())
        except FileNotFoundError as error:
            pytest.skip(f"offline SmolLM2 unavailable: {error}")
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except OSError:
        pytest.skip(f"tokenizer {name} is not in the local Hugging Face cache (gated, needs a download)")


# --- pairs -----------------------------------------------------------------


def test_pairs_follow_records(pairs, persona_dir_module):
    records = persona.load_behaviour("Behavior 1", data_dir=persona_dir_module)
    assert len(pairs) == len(records)
    for record, row in zip(records[:50], pairs.itertuples()):
        assert row.prompt == prompts.format_prompt(record.question)
        assert row.chosen == record.answer_matching_behavior
        assert row.rejected == record.answer_not_matching_behavior
        assert row.label == record.label


def test_pair_labels_match_chosen_answer(pairs):
    expected = np.where(pairs["chosen"] == " Yes", 1, -1)
    assert np.array_equal(pairs["label"].to_numpy(), expected)
    assert pairs["label"].dtype == np.int8


def test_pairs_reject_empty_input():
    with pytest.raises(ValueError, match="empty"):
        prefdata.preference_pairs([])


# --- split -------------------------------------------------------------------


def test_split_partitions_and_stratifies(pairs):
    labels = pairs["label"].to_numpy()
    train, test = prefdata.stratified_split(labels, 0.1, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    for value in (1, -1):
        members = np.sum(labels == value)
        assert np.sum(labels[test] == value) == round(0.1 * members)


def test_split_is_seeded(pairs):
    labels = pairs["label"].to_numpy()
    first = prefdata.stratified_split(labels, seed=0)[1]
    again = prefdata.stratified_split(labels, seed=0)[1]
    other = prefdata.stratified_split(labels, seed=1)[1]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        prefdata.stratified_split([1, -1] * 10, fraction)


def test_split_rejects_tiny_class():
    with pytest.raises(ValueError, match="empty"):
        prefdata.stratified_split([1, 1, 1, -1], 0.1)


# --- noise -------------------------------------------------------------------


def test_flip_swaps_answers_and_labels(pairs):
    subset = pairs.iloc[:20].reset_index(drop=True)
    flip = np.arange(20) % 3 == 0
    noisy = prefdata.flip_pairs(subset, flip)
    assert (noisy["chosen"][flip] == subset["rejected"][flip]).all()
    assert (noisy["rejected"][flip] == subset["chosen"][flip]).all()
    assert (noisy["label"][flip] == -subset["label"][flip]).all()
    assert noisy[~flip][["prompt", "chosen", "rejected", "label"]].equals(
        subset[~flip][["prompt", "chosen", "rejected", "label"]]
    )
    assert (noisy["prompt"] == subset["prompt"]).all()


def test_flip_rejects_wrong_shape(pairs):
    with pytest.raises(ValueError, match="shape"):
        prefdata.flip_pairs(pairs.iloc[:5], [True, False])


def test_mislabeled_masks_nested_and_antithetic():
    epsilons = np.round(np.arange(21) * 0.05, 10)
    masks = prefdata.mislabeled_masks(900, epsilons, seed=4)
    assert masks.shape == (21, 900)
    assert not masks[0].any()
    assert masks[-1].all()
    for low in range(10):
        assert np.all(masks[low] <= masks[low + 1])
        assert np.array_equal(masks[20 - low], ~masks[low])


def test_mislabeled_rate_matches_epsilon():
    masks = prefdata.mislabeled_masks(20_000, [0.1, 0.3], seed=0)
    assert abs(masks[0].mean() - 0.1) < 0.01
    assert abs(masks[1].mean() - 0.3) < 0.015


def _separable_data(n=1000, d=8, seed=0):
    generator = np.random.default_rng(seed)
    labels = np.where(np.arange(n) % 2 == 0, 1, -1).astype(np.int8)
    x = generator.normal(size=(n, d)) + 1.5 * labels[:, None] * np.eye(d)[0]
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def separable():
    """Synthetic two-class data and the fit of the reward, done once (500 Adam steps)."""
    x, labels = _separable_data()
    fitted = prefdata.uncertain_masks(x, labels, [0.25], seed=5)
    return x, labels, fitted


def test_uncertain_masks_hit_target_rate(separable):
    x, labels, fitted = separable
    epsilons = [0.1, 0.2, 0.3, 0.4]
    noise = prefdata.uncertain_masks(x, labels, epsilons, seed=0, rewards=fitted.rewards)
    assert noise.masks.shape == (4, len(labels))
    mean_probability = noise.flip_probabilities.mean(axis=1)
    assert np.all(np.abs(mean_probability - epsilons) <= 1e-3)
    assert np.all(np.diff(noise.omegas) > 0)
    assert np.all(np.abs(noise.masks.mean(axis=1) - epsilons) < 0.05)


def test_uncertain_flips_concentrate_near_boundary(separable):
    x, labels, fitted = separable
    noise = prefdata.uncertain_masks(x, labels, [0.2], seed=1, rewards=fitted.rewards)
    margin = np.abs(noise.rewards)
    near = margin < np.median(margin)
    assert noise.masks[0][near].mean() > 2 * noise.masks[0][~near].mean()


def test_uncertain_limits_zero_and_half(separable):
    x, labels, fitted = separable
    noise = prefdata.uncertain_masks(x, labels, [0.0, 0.5], seed=2, rewards=fitted.rewards)
    misclassified = labels * noise.rewards < 0
    assert noise.omegas[0] == 0.0
    assert np.isinf(noise.omegas[1])
    assert np.array_equal(noise.masks[0], misclassified)
    assert abs(noise.masks[1].mean() - 0.5) < 0.06


def test_uncertain_reuses_rewards(separable):
    x, labels, fitted = separable
    again = prefdata.uncertain_masks(x, labels, [0.25], seed=5, rewards=fitted.rewards)
    assert np.array_equal(fitted.masks, again.masks)


def test_uncertain_noise_only_on_train_rows(separable):
    x, labels, fitted = separable
    train = np.arange(0, 1000, 2)
    noise = prefdata.uncertain_masks(x, labels, [0.3], train_index=train, rewards=fitted.rewards)
    assert noise.masks.shape == (1, train.size)
    assert abs(noise.flip_probabilities.mean() - 0.3) <= 1e-3


def test_uncertain_rejects_rate_above_half(separable):
    x, labels, fitted = separable
    with pytest.raises(ValueError, match=r"\[0, 1/2\]"):
        prefdata.uncertain_masks(x, labels, [0.6], rewards=fitted.rewards)


def test_to_dataset_has_trl_columns(pairs):
    dataset = prefdata.to_dataset(pairs.iloc[:3])
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset[0]["prompt"] == pairs["prompt"].iloc[0]


# --- tokenization by TRL ---------------------------------------------------------


@pytest.fixture(scope="module")
def both_behaviours(persona_dir_module):
    import pandas as pd

    return pd.concat(
        [prefdata.preference_pairs(persona.load_behaviour(name, data_dir=persona_dir_module))
         for name in persona.PAPER_BEHAVIOURS],
        ignore_index=True,
    )


@pytest.mark.parametrize("name", TOKENIZERS)
def test_trl_tokenization_of_answers(name, both_behaviours):
    tokenizer = _load_tokenizer(name)
    answer_ids = {
        answer: tokenizer(text=answer, add_special_tokens=False)["input_ids"] for answer in persona.ANSWERS
    }
    assert all(len(ids) == 1 for ids in answer_ids.values()), answer_ids
    tokenized = trl_runner.tokenize_like_trl(prefdata.to_dataset(both_behaviours), tokenizer)
    bos = tokenizer.bos_token_id

    # No prompt reaches max_length, so TRL drops no pair.
    assert len(tokenized) == len(both_behaviours)
    for row, example in zip(both_behaviours.itertuples(), tokenized):
        # The completion is exactly the answer token: TRL's EOS is stripped.
        assert example["chosen_ids"] == answer_ids[row.chosen], row.prompt
        assert example["rejected_ids"] == answer_ids[row.rejected], row.prompt
        # TRL cuts the completion off where prompt and prompt + answer
        # diverge, so a merge across the boundary would shorten the prompt.
        assert example["prompt_ids"] == tokenizer(text=row.prompt)["input_ids"], row.prompt
        whole = tokenizer(text=row.prompt + row.chosen)["input_ids"]
        assert whole == example["prompt_ids"] + example["chosen_ids"], row.prompt
        if bos is not None:
            assert (example["prompt_ids"] + example["chosen_ids"]).count(bos) <= 1, row.prompt


def test_trl_appends_eos_before_strip(pairs):
    from trl import DPOConfig, DPOTrainer
    from types import SimpleNamespace

    tokenizer = _load_tokenizer("SmolLM2-135M-Instruct")
    args = DPOConfig(
        output_dir="unused", max_length=256, bf16=False, use_cpu=True,
        **{trl_runner.checkpointing_keyword(): False},
    )
    raw = DPOTrainer._prepare_dataset(
        SimpleNamespace(_tokenizer=tokenizer), prefdata.to_dataset(pairs.iloc[:4]), tokenizer, args, "train"
    )
    assert all(example["chosen_ids"][-1] == tokenizer.eos_token_id for example in raw)
    assert all(len(example["chosen_ids"]) == 2 for example in raw)


def test_prompts_fit_the_paper_prompt_limit(pairs):
    tokenizer = _load_tokenizer("SmolLM2-135M-Instruct")
    lengths = trl_runner.prompt_token_lengths(tokenizer, pairs["prompt"].tolist())
    assert lengths.max() < trl_runner.PAPER_MAX_PROMPT_LENGTH


@pytest.mark.llm
@pytest.mark.slow
def test_trainer_dataset_matches_tokenize_like_trl(pairs):
    from noisypo.models import load_causal_lm

    model, tokenizer = load_causal_lm(None, device="cpu", dtype=torch.float32)
    settings = trl_runner.TRLSettings(batch_size=2, max_steps=1)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        config = trl_runner.dpo_config(settings, folder, eval_batch_size=2)
        config.precompute_ref_log_probs = False
        trainer = trl_runner.SingleTokenDPOTrainer(
            model=model, ref_model=None, args=config,
            train_dataset=prefdata.to_dataset(pairs.iloc[:6]), processing_class=tokenizer,
        )
        expected = trl_runner.tokenize_like_trl(prefdata.to_dataset(pairs.iloc[:6]), tokenizer, config)
        for got, want in zip(trainer.train_dataset, expected):
            assert got["prompt_ids"] == want["prompt_ids"]
            assert got["chosen_ids"] == want["chosen_ids"]
            assert got["rejected_ids"] == want["rejected_ids"]
