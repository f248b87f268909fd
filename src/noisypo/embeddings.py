"""Persona embeddings: last hidden states of a causal LM, cached on disk.

The embedding of a persona question is the hidden state that the model's
final normalisation layer (RMSNorm in Llama-type models) outputs at the
last token of the prompt ``noisypo.prompts.format_prompt(question)``. It is
stored RAW, not scaled to unit norm, so that norm statistics can be
measured; the vMF model uses the direction x / |x|.

Embeddings are computed once per (model, behaviour, prompt template, limit,
seed) and saved as ``.npz`` files under ``noisypo.paths.cache_dir("embeddings")``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisypo import persona, prompts
from noisypo.models import model_name
from noisypo.paths import cache_dir

__all__ = [
    "EmbeddingSet",
    "cache_path",
    "embed_prompts",
    "norm_cosine_statistics",
    "persona_embeddings",
    "stratified_indices",
]

logger = logging.getLogger(__name__)

# Bump when the way embeddings are computed changes, so old cache files are ignored.
CACHE_VERSION = 1


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings of the questions of one persona behaviour."""

    x: np.ndarray = field(repr=False)  # (n, d) float32, raw final-norm hidden states
    labels: np.ndarray = field(repr=False)  # (n,) int8: +1 when " Yes" matches the behaviour, else -1
    questions: list[str] = field(repr=False)  # (n,) the persona questions, in the order of x
    behaviour: str  # file name of the behaviour, e.g. "narcissism"
    model: str  # short model name (noisypo.models.model_name)
    indices: np.ndarray = field(default=None, repr=False)  # (n,) row numbers in the behaviour file

    @property
    def n(self) -> int:
        """Number of embedded questions."""
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        """Embedding dimension."""
        return int(self.x.shape[1])


def stratified_indices(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Return sorted row indices of a seeded subsample that keeps the class proportions.

    Each class keeps round(limit * its share) rows (the larger class absorbs
    the rounding), drawn without replacement by ``numpy.random.default_rng(seed)``.
    ``limit=None`` or a limit of at least the number of rows keeps every row.

    Raises
    ------
    ValueError
        If limit < 2.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 2:
        raise ValueError(f"limit must be >= 2 (one question per class at least), got {limit}")
    rng = np.random.default_rng(seed)
    positive = np.flatnonzero(labels == 1)
    negative = np.flatnonzero(labels != 1)
    take_pos = int(round(limit * positive.size / n))
    take_pos = min(max(take_pos, 1 if positive.size else 0), positive.size)
    take_neg = min(limit - take_pos, negative.size)
    chosen = np.concatenate(
        [rng.choice(positive, take_pos, replace=False), rng.choice(negative, take_neg, replace=False)]
    )
    return np.sort(chosen)


def cache_path(behaviour: str, model_id: str | None = None, *, limit: int | None = None, seed: int = 0) -> Path:
    """Return the cache file of one (model, behaviour, template, limit, seed)."""
    name = persona.PAPER_BEHAVIOURS.get(behaviour, behaviour)
    template_hash = hashlib.sha256(prompts.TEMPLATE.encode("utf-8")).hexdigest()[:10]
    limit_part = "all" if limit is None else f"limit{limit}"
    file_name = f"{name}__{prompts.TEMPLATE_NAME}-{template_hash}__{limit_part}__seed{seed}__v{CACHE_VERSION}.npz"
    return cache_dir("embeddings", model_name(model_id)) / file_name


def embed_prompts(model, tokenizer, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
    """Return the final-norm hidden state at the last token of each text, float32 (n, d).

    Texts are tokenised with the tokenizer's defaults (SmolLM2 adds no BOS;
    Llama 3 adds ``<|begin_of_text|>``), sorted by length and batched with
    right padding, and the state is read at each text's last real token.
    Under causal attention the padding after it cannot change that state.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    encoded = [tokenizer(text)["input_ids"] for text in texts]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths = torch.tensor([len(encoded[i]) for i in rows])
            width = int(lengths.max())
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : lengths[j]] = torch.tensor(encoded[i])
                mask[j, : lengths[j]] = 1
            result = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True
            )
            # The last entry of hidden_states is the output of the final norm.
            last = result.hidden_states[-1]  # (batch, width, d)
            states = last[torch.arange(len(rows), device=device), (lengths - 1).to(device)]  # (batch, d)
            states = states.float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), states.shape[1]), dtype=np.float32)
            out[rows] = states
    return out


def _load_cached(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError) as error:
        logger.warning("ignoring unreadable embedding cache %s (%s)", path, error)
        return None


def _save_atomic(path: Path, **arrays) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.part", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with open(tmp_path, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def persona_embeddings(
    behaviour: str,
    model_id: str | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    device: str | None = None,
    refresh: bool = False,
) -> EmbeddingSet:
    """Return (and cache) the embeddings of a persona behaviour's questions.

    Parameters
    ----------
    behaviour : str
        A behaviour file name (``noisypo.persona.BEHAVIOURS``) or
        ``"Behavior 1"`` / ``"Behavior 2"``.
    model_id : str, optional
        Hugging Face id or folder; ``None`` uses the offline SmolLM2-135M-Instruct.
    limit : int, optional
        Embed a seeded, class-stratified subsample of this many questions
        (see :func:`stratified_indices`); ``None`` embeds all.
    seed : int
        Seed of the subsample.
    batch_size : int
        Prompts per forward pass (not part of the cache key).
    device : str, optional
        Passed to :func:`noisypo.models.load_causal_lm`.
    refresh : bool
        Recompute even if a cache file exists.

    Returns
    -------
    EmbeddingSet

    Raises
    ------
    ValueError
        If the behaviour is unknown or limit < 2.
    noisypo.persona.PersonaDataError
        If the behaviour file is missing or corrupted.
    """
    records = persona.load_behaviour(behaviour)
    name = persona.PAPER_BEHAVIOURS.get(behaviour, behaviour)
    all_labels = np.array([record.label for record in records], dtype=np.int8)
    indices = stratified_indices(all_labels, limit, seed)
    questions = [records[i].question for i in indices]
    labels = all_labels[indices]
    short_model = model_name(model_id)
    path = cache_path(name, model_id, limit=limit, seed=seed)

    cached = None if refresh or not path.is_file() else _load_cached(path)
    if cached is not None and np.array_equal(cached.get("indices"), indices):
        logger.info("loaded %d embeddings of %s from %s", indices.size, name, path)
        return EmbeddingSet(cached["x"], labels, questions, name, short_model, indices)

    from noisypo.models import load_causal_lm

    model, tokenizer = load_causal_lm(model_id, device=device)
    start = time.perf_counter()
    texts = [prompts.format_prompt(question) for question in questions]
    x = embed_prompts(model, tokenizer, texts, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    logger.info("embedded %d prompts of %s with %s in %.1f s", len(texts), name, short_model, elapsed)
    meta = json.dumps({"model": short_model, "behaviour": name, "template": prompts.TEMPLATE,
                       "limit": limit, "seed": seed, "seconds": elapsed})
    _save_atomic(path, x=x, labels=labels, indices=indices, meta=np.array(meta))
    return EmbeddingSet(x, labels, questions, name, short_model, indices)


def norm_cosine_statistics(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return the norm and cosine statistics of raw embeddings (the columns of Table 1).

    * ``mean_norm`` and ``norm_variance``: mean and population variance
      (divisor n) of the Euclidean norms |x_i| of the raw rows;
    * ``mean_cosine`` and ``cosine_variance``: mean and population variance
      of cos(x_i, m_c), where m_c is the mean of the unit rows x_j / |x_j|
      of the class c of row i (each class uses its own mean).

    Raises
    ------
    ValueError
        If x is not (n, d), the lengths differ, a row is zero, or a class
        has fewer than 2 rows.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise ValueError("x has a zero row, whose direction is undefined")
    unit = x / norms[:, None]
    cosines = np.empty(x.shape[0])
    for value in np.unique(labels):
        rows = labels == value
        if rows.sum() < 2:
            raise ValueError(f"class {value} has {int(rows.sum())} row(s); need at least 2")
        mean = unit[rows].mean(axis=0)
        cosines[rows] = unit[rows] @ (mean / np.linalg.norm(mean))
    return {
        "mean_norm": float(norms.mean()),
        "norm_variance": float(norms.var()),
        "mean_cosine": float(cosines.mean()),
        "cosine_variance": float(cosines.var()),
    }
