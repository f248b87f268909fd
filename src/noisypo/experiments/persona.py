"""The persona experiment: GPO under label noise on real LLM embeddings.

Two regimes train on preference pairs built from Anthropic's persona
statements (:mod:`noisypo.prefdata`) with a seeded, stratified 90/10 split:

fixed backbone (the theory's setting)
    The backbone is frozen, so a prompt is its last hidden state ``x``
    (:func:`noisypo.embeddings.persona_embeddings`, raw, after the final
    norm) and the policy is ``softmax(W x)``. Only the unembedding rows of
    the two answer tokens move. They start at the model's own ``lm_head``
    rows ``W_ref`` (:func:`answer_rows`), and the margin of a pair is
    ``r = beta s Delta . x`` with ``Delta = (w_yes - w_no) - (w_yes - w_no)_ref``,
    so ``W_ref`` cancels from every margin. Full-batch gradient descent on
    the GPO losses of :mod:`noisypo.losses` runs for every loss, noise rate
    and seed in one batched kernel (:func:`train_fixed_backbone`).
full fine-tuning
    TRL's ``DPOTrainer`` through :mod:`noisypo.trl_runner` (:func:`run_trl_grid`).

Both report the held-out accuracy, the fraction of clean test pairs with a
strictly positive implicit reward margin, and the fraction of ties (margin
exactly 0) apart. Results go to a :class:`~noisypo.experiments.storage.ResultStore`
folder, one part per behaviour (fixed backbone) or per run (TRL), so an
interrupted grid resumes.

References
----------
S. Im and Y. Li, "How Well Can Preference Optimization Generalize Under
Noisy Feedback?", arXiv:2510.01458, 2025 (Section 4.2, Figure 5, Appendix A
and D.2). E. Perez et al., "Discovering Language Model Behaviors with
Model-Written Evaluations", 2022 (the persona data, CC BY 4.0).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from noisypo import persona, prefdata
from noisypo.losses import get_loss

__all__ = [
    "NOISE_MODELS",
    "PersonaData",
    "answer_rows",
    "epsilon_grid",
    "held_out_accuracy",
    "load_persona_data",
    "load_repository_results",
    "run_fixed_backbone",
    "run_trl_grid",
    "separation",
    "summarize",
    "train_fixed_backbone",
]

NOISE_MODELS = ("mislabeled", "uncertain")
REPOSITORY_RESULTS = Path(__file__).resolve().parents[3] / "results" / "persona"


def epsilon_grid(step: float = 0.05, stop: float = 0.5) -> np.ndarray:
    """Return ``0, step, ..., stop`` rounded to 10 decimals (exact endpoints)."""
    count = int(round(stop / step))
    if count < 1 or not np.isclose(count * step, stop):
        raise ValueError(f"stop={stop} must be a positive multiple of step={step}")
    return np.round(np.arange(count + 1) * step, 10)


@dataclass(frozen=True)
class PersonaData:
    """One behaviour's pairs and embeddings, in the same row order."""

    behaviour: str  # file name, e.g. "desire-to-remove-safety-precautions-to-be-more-helpful"
    pairs: pd.DataFrame  # columns of noisypo.prefdata.preference_pairs
    x: np.ndarray  # (n, d) float32 raw last hidden states
    labels: np.ndarray  # (n,) int8, +1 when " Yes" matches the behaviour
    model: str


def load_persona_data(behaviour: str, *, limit: int | None = None, model_id: str | None = None) -> PersonaData:
    """Return the preference pairs and cached embeddings of a behaviour.

    ``limit`` takes the seeded, class-stratified subsample of the embedding
    cache (:func:`noisypo.embeddings.persona_embeddings`, seed 0), and the
    pairs are built for the same records in the same order.
    """
    from noisypo.embeddings import persona_embeddings

    embeddings = persona_embeddings(behaviour, model_id, limit=limit)
    records = persona.load_behaviour(behaviour)
    pairs = prefdata.preference_pairs([records[i] for i in embeddings.indices])
    if not np.array_equal(pairs["label"].to_numpy(), embeddings.labels):
        raise RuntimeError(f"labels of the pairs and the embedding cache of {behaviour!r} differ")
    return PersonaData(embeddings.behaviour, pairs, embeddings.x, embeddings.labels, embeddings.model)


def answer_rows(model_id: str | None = None) -> np.ndarray:
    """Return the ``lm_head`` rows of ``" Yes"`` and ``" No"``, shape (2, d), float64.

    Cached under ``noisypo.paths.cache_dir("persona")`` after the first load.
    """
    from noisypo.models import model_name
    from noisypo.paths import cache_dir

    path = cache_dir("persona") / f"answer-rows__{model_name(model_id)}.npy"
    if path.is_file():
        return np.load(path)
    from noisypo.models import load_causal_lm

    model, tokenizer = load_causal_lm(model_id, device="cpu", dtype=torch.float32)
    ids = [tokenizer(text=answer, add_special_tokens=False)["input_ids"] for answer in persona.ANSWERS]
    if any(len(token_ids) != 1 for token_ids in ids):
        raise ValueError(f"answers {persona.ANSWERS} are not single tokens for {model_name(model_id)}: {ids}")
    rows = model.get_output_embeddings().weight[[ids[0][0], ids[1][0]]].detach().double().numpy()
    np.save(path, rows)
    return rows


def separation(x, labels) -> dict[str, float]:
    """Return how far apart the two classes of a behaviour lie.

    * ``mean_distance``: ``|m_+ - m_-|`` for the class means of the raw
      embeddings (the paper's measure of separation);
    * ``unit_mean_distance``: the same for the rows scaled to unit norm;
    * ``cos_phi``, ``phi``: cosine and angle between the vMF mean directions
      of the two classes (:func:`noisypo.vmf.fit_vmf` on each class);
    * ``kappa_plus``, ``kappa_minus``, ``gamma``: fitted concentrations and
      their mean divided by ``d``;
    * ``mean_cosine``: mean cosine of a unit row to its class mean direction.
    """
    from noisypo.vmf import fit_vmf

    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) and labels (n,), got {x.shape} and {labels.shape}")
    plus, minus = x[labels == 1], x[labels == -1]
    if len(plus) < 2 or len(minus) < 2:
        raise ValueError("each class needs at least 2 rows")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    fit_plus, fit_minus = fit_vmf(plus), fit_vmf(minus)
    cos_phi = float(np.clip(np.dot(fit_plus.mu, fit_minus.mu), -1.0, 1.0))
    mu = np.where(labels[:, None] == 1, fit_plus.mu, fit_minus.mu)
    return {
        "mean_distance": float(np.linalg.norm(plus.mean(0) - minus.mean(0))),
        "unit_mean_distance": float(np.linalg.norm(unit[labels == 1].mean(0) - unit[labels == -1].mean(0))),
        "mean_norm": float(np.linalg.norm(x, axis=1).mean()),
        "cos_phi": cos_phi,
        "phi": float(np.arccos(cos_phi)),
        "kappa_plus": float(fit_plus.kappa),
        "kappa_minus": float(fit_minus.kappa),
        "gamma": float(0.5 * (fit_plus.kappa + fit_minus.kappa) / x.shape[1]),
        "mean_cosine": float(np.mean(np.sum(unit * mu, axis=1))),
        "d": int(x.shape[1]),
    }


def train_fixed_backbone(
    x: Tensor, s: Tensor, losses: Sequence[str], *, beta: float, lr: float, steps: int
) -> Tensor:
    """Train the two answer rows by full-batch gradient descent, batched.

    Parameters
    ----------
    x
        Training embeddings, shape (S, N, d): one training set per seed.
    s
        Noisy labels in {+1, -1}, shape (S, E, N): E label vectors (noise
        rates) per training set.
    losses
        GPO loss names; adds the leading dimension L.
    beta, lr, steps
        Temperature, learning rate of each row, number of steps.

    Returns
    -------
    Tensor
        ``Delta`` of shape (L, S, E, d).

    Notes
    -----
    With ``r_i = beta s_i Delta . x_i`` and ``L = (1/N) sum_i f(r_i)``, the
    rows get ``dL/dw_yes = -dL/dw_no = (beta/N) sum_i f'(r_i) s_i x_i``, so
    one step moves ``Delta`` by ``-2 lr (beta/N) sum_i f'(r_i) s_i x_i``: the
    update of :func:`noisypo.dynamics.gradient_descent`. The L * E problems
    of one training set are the columns of one matrix, so a step is two
    batched matrix products.
    """
    if x.ndim != 3 or s.ndim != 3 or s.shape[0] != x.shape[0] or s.shape[2] != x.shape[1]:
        raise ValueError(f"x must be (S, N, d) and s (S, E, N), got {tuple(x.shape)} and {tuple(s.shape)}")
    if not (beta > 0 and lr > 0) or int(steps) < 0:
        raise ValueError(f"need beta > 0, lr > 0 and steps >= 0, got {beta}, {lr}, {steps}")
    specs = [get_loss(name) for name in losses]
    sets, rates, count = s.shape
    s = s.to(x.dtype)
    s_columns = s.transpose(1, 2).repeat(1, 1, len(specs))  # (S, N, L*E), column l*E + e
    x_t = x.transpose(1, 2)  # (S, d, N)
    delta = torch.zeros(sets, x.shape[-1], len(specs) * rates, dtype=x.dtype)  # (S, d, L*E)
    step = 2.0 * lr * beta / count
    for _ in range(int(steps)):
        margin = beta * s_columns * torch.bmm(x, delta)  # (S, N, L*E)
        slope = torch.cat(
            [spec.f_prime(block) for spec, block in zip(specs, margin.split(rates, dim=-1))], dim=-1
        )  # f'(r), (S, N, L*E)
        delta = delta - step * torch.bmm(x_t, slope * s_columns)  # (S, d, L*E)
    return delta.reshape(sets, -1, len(specs), rates).permute(2, 0, 3, 1)  # (L, S, E, d)


def held_out_accuracy(delta: Tensor, x_test: Tensor, s_test: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Return the accuracy (margin > 0) and tie fraction (margin == 0) on test pairs.

    ``delta`` (L, S, E, d), ``x_test`` (S, M, d), ``s_test`` (S, M) clean
    labels; both results have shape (L, S, E).
    """
    margins = beta * s_test[None, :, None, :] * torch.einsum("lsed,smd->lsem", delta, x_test)
    return (margins > 0).double().mean(-1), (margins == 0).double().mean(-1)


def _splits(labels: np.ndarray, seeds: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [prefdata.stratified_split(labels, prefdata.TEST_FRACTION, seed=int(seed)) for seed in seeds]


def _fixed_backbone_table(data: PersonaData, sizes: Mapping, dtype: torch.dtype) -> pd.DataFrame:
    """Run every loss, noise model, noise rate and seed of one behaviour."""
    seeds = list(range(int(sizes["seeds"])))
    splits = _splits(data.labels, seeds)
    x_all = torch.as_tensor(data.x, dtype=dtype)
    scale = float((x_all**2).sum(-1).mean())  # mean |x|^2
    lr = float(sizes["lr"]) / (float(sizes["beta"]) ** 2 * scale)
    x_train = torch.stack([x_all[train] for train, _ in splits])  # (S, N, d)
    x_test = torch.stack([x_all[test] for _, test in splits])  # (S, M, d)
    s_train = torch.stack([torch.as_tensor(data.labels[train], dtype=dtype) for train, _ in splits])
    s_test = torch.stack([torch.as_tensor(data.labels[test], dtype=dtype) for _, test in splits])

    rows = []
    for noise_model in NOISE_MODELS:
        epsilons = epsilon_grid(0.05, float(sizes[f"{noise_model}_max_epsilon"]))
        masks, omegas, rewards = [], [], None
        for seed, (train, _) in zip(seeds, splits):
            if noise_model == "mislabeled":
                masks.append(prefdata.mislabeled_masks(len(train), epsilons, seed=seed))
                omegas.append(np.full(epsilons.size, np.nan))
            else:
                uncertain = prefdata.uncertain_masks(
                    data.x, data.labels, epsilons, train_index=train, seed=seed, rewards=rewards
                )
                rewards = uncertain.rewards  # the reward fit does not depend on the split
                masks.append(uncertain.masks)
                omegas.append(uncertain.omegas)
        flips = torch.as_tensor(np.stack(masks))  # (S, E, N)
        s_noisy = torch.where(flips, -s_train[:, None, :], s_train[:, None, :])
        delta = train_fixed_backbone(
            x_train, s_noisy, sizes["losses"], beta=float(sizes["beta"]), lr=lr, steps=int(sizes["steps"])
        )
        accuracy, ties = held_out_accuracy(delta, x_test, s_test, float(sizes["beta"]))
        flipped = flips.double().mean(-1)  # (S, E)
        for l, loss in enumerate(sizes["losses"]):
            for k, seed in enumerate(seeds):
                for e, epsilon in enumerate(epsilons):
                    rows.append(
                        {
                            "regime": "fixed",
                            "behaviour": data.behaviour,
                            "noise": noise_model,
                            "loss": loss,
                            "epsilon": float(epsilon),
                            "omega": float(omegas[k][e]),
                            "seed": seed,
                            "flipped": float(flipped[k, e]),
                            "accuracy": float(accuracy[l, k, e]),
                            "ties": float(ties[l, k, e]),
                            "n_train": int(x_train.shape[1]),
                            "n_test": int(x_test.shape[1]),
                        }
                    )
    return pd.DataFrame(rows)


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """Return mean accuracy, ties and standard error per behaviour, noise, loss and epsilon."""
    keys = [column for column in ("regime", "behaviour", "noise", "loss", "epsilon") if column in trials]
    grouped = trials.groupby(keys, sort=True)
    summary = grouped.agg(
        accuracy=("accuracy", "mean"),
        accuracy_se=("accuracy", lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan),
        ties=("ties", "mean"),
        flipped=("flipped", "mean"),
        runs=("accuracy", "size"),
    )
    return summary.reset_index()


def _config_key(config: Mapping) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _describe_device() -> str:
    import os
    import platform

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def run_fixed_backbone(
    sizes: Mapping, *, folder: str | Path | None = None, model_id: str | None = None
) -> pd.DataFrame:
    """Run the fixed-backbone grid for every behaviour in ``sizes["behaviours"]``.

    Parameters
    ----------
    sizes
        A ``[persona.<profile>]`` table: ``behaviours``, ``limit`` (0: all
        rows), ``seeds``, ``losses``, ``beta``, ``lr`` (dimensionless: the
        row learning rate is ``lr / (beta^2 mean |x|^2)``), ``steps``,
        ``mislabeled_max_epsilon``, ``uncertain_max_epsilon``.
    folder
        Results folder (default: ``noisypo.paths.cache_dir("results",
        "persona", "fixed-<hash of the config>")``); finished behaviours are
        read back instead of rerun.
    model_id
        Backbone (``None``: the offline SmolLM2-135M-Instruct).

    Returns
    -------
    pandas.DataFrame
        One row per (behaviour, noise model, loss, epsilon, seed).
    """
    from noisypo.experiments.storage import ResultStore
    from noisypo.models import model_name
    from noisypo.paths import cache_dir

    keys = ("behaviours", "limit", "seeds", "losses", "beta", "lr", "steps",
            "mislabeled_max_epsilon", "uncertain_max_epsilon")
    missing = [key for key in keys if key not in sizes]
    if missing:
        raise KeyError(f"sizes lack {missing}; pass a [persona.<profile>] table")
    config = {key: sizes[key] for key in keys} | {"model": model_name(model_id), "regime": "fixed"}
    config = json.loads(json.dumps(config))
    folder = Path(folder) if folder else cache_dir("results", "persona", f"fixed-{_config_key(config)}")
    store = ResultStore(folder, config, device=_describe_device())
    start = time.perf_counter()
    for behaviour in sizes["behaviours"]:
        key = persona.PAPER_BEHAVIOURS.get(behaviour, behaviour)
        if store.has(key):
            continue
        limit = int(sizes["limit"]) or None
        data = load_persona_data(behaviour, limit=limit, model_id=model_id)
        store.save_part(key, _fixed_backbone_table(data, sizes, torch.float64))
    trials = store.load_parts()
    store.finish(trials, summarize(trials), seconds=time.perf_counter() - start)
    return trials


def _shortest_subset(pairs: pd.DataFrame, index: np.ndarray, count: int) -> np.ndarray:
    """Return ``count`` rows of ``index`` with the shortest prompts, half per class."""
    chosen = []
    for value in (1, -1):
        members = index[pairs["label"].to_numpy()[index] == value]
        lengths = pairs["prompt"].str.len().to_numpy()[members]
        chosen.append(members[np.argsort(lengths, kind="stable")[: (count + (value == 1)) // 2]])
    return np.sort(np.concatenate(chosen))


def run_trl_grid(
    sizes: Mapping,
    *,
    folder: str | Path | None = None,
    model_id: str | None = None,
    use_cpu: bool | None = None,
    deepspeed: str | None = None,
) -> pd.DataFrame:
    """Run full fine-tuning with TRL for each behaviour, loss and noise rate.

    Parameters
    ----------
    sizes
        A ``[persona.<profile>]`` table with the ``trl_*`` keys:
        ``trl_behaviours``, ``trl_losses``, ``trl_noise``, ``trl_epsilons``,
        ``trl_train`` and ``trl_test`` (0: the whole split; else that many
        pairs with the shortest prompts, half per class), ``trl_batch_size``,
        ``trl_max_steps`` (-1: one epoch), ``trl_learning_rate``, ``beta``.
    folder
        Results folder (default: under ``noisypo.paths.cache_dir``); each
        finished run is a part, so a rerun skips it.
    model_id
        Model to fine-tune (``None``: the offline SmolLM2-135M-Instruct).
    use_cpu
        Train on CPU in float32 (default: when CUDA is unavailable).
    deepspeed
        DeepSpeed config for ``accelerate launch`` on several GPUs.

    Notes
    -----
    NOTE: the multi-GPU path (``accelerate launch`` with DeepSpeed ZeRO-3)
    has not been run: no GPU was available when it was written. Every
    process measures and writes the same result part.
    """
    from noisypo import trl_runner
    from noisypo.experiments.storage import ResultStore
    from noisypo.models import model_name
    from noisypo.paths import cache_dir

    keys = ("trl_behaviours", "trl_losses", "trl_noise", "trl_epsilons", "trl_train", "trl_test",
            "trl_batch_size", "trl_max_steps", "trl_learning_rate", "beta")
    missing = [key for key in keys if key not in sizes]
    if missing:
        raise KeyError(f"sizes lack {missing}; pass a [persona.<profile>] table")
    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()
    config = {key: sizes[key] for key in keys} | {"model": model_name(model_id), "regime": "trl"}
    config = json.loads(json.dumps(config))
    folder = Path(folder) if folder else cache_dir("results", "persona", f"trl-{_config_key(config)}")
    store = ResultStore(folder, config, device=_describe_device())
    start = time.perf_counter()
    for behaviour in sizes["trl_behaviours"]:
        name = persona.PAPER_BEHAVIOURS.get(behaviour, behaviour)
        pairs = prefdata.preference_pairs(persona.load_behaviour(behaviour))
        train, test = prefdata.stratified_split(pairs["label"], prefdata.TEST_FRACTION, seed=0)
        if int(sizes["trl_train"]):
            train = _shortest_subset(pairs, train, int(sizes["trl_train"]))
        if int(sizes["trl_test"]):
            test = _shortest_subset(pairs, test, int(sizes["trl_test"]))
        epsilons = np.asarray(sizes["trl_epsilons"], dtype=np.float64)
        noise_model = sizes["trl_noise"]
        if noise_model == "mislabeled":
            masks = prefdata.mislabeled_masks(len(train), epsilons, seed=0)
            omegas = np.full(epsilons.size, np.nan)
        else:
            data = load_persona_data(behaviour, model_id=model_id)
            uncertain = prefdata.uncertain_masks(data.x, data.labels, epsilons, train_index=train, seed=0)
            masks, omegas = uncertain.masks, uncertain.omegas
        for loss in sizes["trl_losses"]:
            for e, epsilon in enumerate(epsilons):
                key = f"{name}__{noise_model}__{loss}__eps{epsilon:.4f}"
                if store.has(key):
                    continue
                settings = trl_runner.TRLSettings(
                    loss_type=loss,
                    learning_rate=float(sizes["trl_learning_rate"]),
                    beta=float(sizes["beta"]),
                    batch_size=int(sizes["trl_batch_size"]),
                    max_steps=int(sizes["trl_max_steps"]),
                    use_cpu=use_cpu,
                    bf16=bool(sizes.get("trl_bf16", False)) and not use_cpu,
                )
                noisy = prefdata.flip_pairs(pairs.iloc[train].reset_index(drop=True), masks[e])
                result = trl_runner.run_dpo(
                    noisy, pairs.iloc[test].reset_index(drop=True), settings,
                    model_id=model_id, deepspeed=deepspeed,
                    check_initial=bool(sizes.get("trl_check_initial", True)),
                )
                row = {
                    "regime": "trl",
                    "behaviour": name,
                    "noise": noise_model,
                    "loss": get_loss(loss).name if loss in ("dpo", "ipo", "slic") else loss,
                    "trl_loss_type": settings.loss_type,
                    "epsilon": float(epsilon),
                    "omega": float(omegas[e]),
                    "seed": 0,
                    "flipped": float(np.mean(masks[e])),
                    "n_train": len(train),
                    "n_test": len(test),
                    "learning_rate": settings.learning_rate,
                    "batch_size": settings.batch_size,
                } | result.to_dict()
                store.save_part(key, pd.DataFrame([row]))
    trials = store.load_parts()
    store.finish(trials, summarize(trials), seconds=time.perf_counter() - start)
    return trials


def load_repository_results(folder: str | Path | None = None) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Return the paper-scale results kept in the repository, if any.

    Looks for ResultStore folders (``run.json`` and ``trials.parquet``)
    directly under ``folder`` (default: ``results/persona`` in the
    repository checkout) and returns ``{name: (trials, run_json)}``; an
    empty dict when none exist. A folder without a finished ``run.json``
    (no ``finished`` time) is skipped, because it contains an interrupted run.
    """
    folder = Path(folder) if folder else REPOSITORY_RESULTS
    found = {}
    if not folder.is_dir():
        return found
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        sidecar, table = sub / "run.json", sub / "trials.parquet"
        if not (sidecar.is_file() and table.is_file()):
            continue
        meta = json.loads(sidecar.read_text("utf-8"))
        if not meta.get("finished"):
            continue
        found[sub.name] = (pd.read_parquet(table), meta)
    return found
