"""Time loading SmolLM2 from the GGUF file and from the safetensors cache.

    python benchmarks/bench_model_load.py

Both loads run in this process, one after the other, so the ratio compares
like with like on the same machine. Target: the cached load under 5 s.
"""

from __future__ import annotations

import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from noisypo import models


def main() -> None:
    models.converted_smollm2_dir()  # make sure the cache exists first

    gguf = models.smollm2_gguf_path()
    start = time.perf_counter()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    from_gguf = time.perf_counter() - start

    start = time.perf_counter()
    models.load_causal_lm(device="cpu")
    from_cache = time.perf_counter() - start

    print(f"load from GGUF:        {from_gguf:6.2f} s")
    print(f"load from cache:       {from_cache:6.2f} s  (target < 5 s)")
    print(f"speed-up of the cache: {from_gguf / from_cache:6.1f} x")


if __name__ == "__main__":
    main()
