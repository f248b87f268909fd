"""Full fine-tuning on persona preference pairs with TRL's ``DPOTrainer``.

The answers are single tokens (``" Yes"``, ``" No"``), and TRL 1.16 appends
the end-of-sequence token to every completion of a non-conversational
dataset before it tokenizes, so ``" No"`` becomes ``[2838, EOS]`` with
SmolLM2. The log-probability of that EOS would then enter every margin.
This module keeps TRL's own tokenization and removes the trailing EOS id
from ``chosen_ids`` and ``rejected_ids`` right after it
(:class:`SingleTokenDPOTrainer`), so the completion is exactly the answer
token and the implicit reward margin of a pair is

.. math::

    r = \\beta \\left[(\\log\\pi(y_w \\mid x) - \\log\\pi_{ref}(y_w \\mid x))
        - (\\log\\pi(y_l \\mid x) - \\log\\pi_{ref}(y_l \\mid x))\\right],

with one next-token log-probability per answer. The reference
log-probabilities come from the initial model (TRL's
``precompute_ref_log_probs=True`` computes them before the first step).

TRL's loss types map to the GPO losses of the book as follows, with
``h = r / beta`` the log-ratio difference of one pair:

* ``"sigmoid"``: ``-log sigmoid(beta h)``, the DPO loss ``f(z) = log(1 + e^{-z})`` at ``z = beta h``;
* ``"hinge"``: ``relu(1 - beta h)``, the SLiC loss ``f(z) = max(0, 1 - z)`` at ``z = beta h``;
* ``"ipo"``: ``(h / L - 1 / (2 beta))^2`` with ``L`` the number of
  completion tokens (here 1), i.e. ``(z - 1/2)^2 / beta^2`` at
  ``z = beta h``: the same family as the book's ``(z - 1)^2`` with the
  target margin halved and the loss scaled by ``1 / beta^2``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)

TRL_LOSS_TYPES = {"dpo": "sigmoid", "ipo": "ipo", "slic": "hinge"}
PAPER_BETA = 0.1
PAPER_BATCH_SIZE = 100
PAPER_MAX_LENGTH = 256
PAPER_MAX_PROMPT_LENGTH = 250
PAPER_MAX_TARGET_LENGTH = 6


def trl_loss_type(loss: str) -> str:
    """Return TRL's ``loss_type`` for a GPO loss name ("dpo", "ipo", "slic").

    TRL's own names ("sigmoid", "ipo", "hinge") pass through unchanged.

    Raises
    ------
    ValueError
        For any other name (TRL itself does not validate ``loss_type`` when
        the config is built, so a misspelt type would fail only at the first
        step).
    """
    name = str(loss).lower()
    if name in TRL_LOSS_TYPES:
        return TRL_LOSS_TYPES[name]
    if name in TRL_LOSS_TYPES.values():
        return name
    known = sorted(set(TRL_LOSS_TYPES) | set(TRL_LOSS_TYPES.values()))
    raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(known)}")


def strip_trailing_eos(dataset, eos_token_id: int):
    """Remove one trailing ``eos_token_id`` from ``chosen_ids`` and ``rejected_ids``.

    Parameters
    ----------
    dataset
        A ``datasets.Dataset`` tokenized by TRL (columns ``prompt_ids``,
        ``chosen_ids``, ``rejected_ids``).
    eos_token_id
        The tokenizer's EOS id.
    """

    def strip(example):
        for key in ("chosen_ids", "rejected_ids"):
            ids = list(example[key])
            if len(ids) > 1 and ids[-1] == eos_token_id:
                ids = ids[:-1]
            example[key] = ids
        return example

    return dataset.map(strip, desc="Removing the EOS that TRL appends")


def tokenize_like_trl(dataset, tokenizer, args=None):
    """Tokenize preference pairs with ``DPOTrainer``'s own code, then strip the EOS.

    Runs TRL's ``DPOTrainer._prepare_dataset`` (prompt extraction, EOS
    appending, tokenization, the common-prefix split between prompt and
    completion, and the drop of prompts that fill ``max_length``) without
    building a trainer, so the tokenization of any tokenizer can be checked
    without its model. :class:`SingleTokenDPOTrainer` produces the same
    columns.
    """
    from trl import DPOConfig, DPOTrainer

    if args is None:
        args = DPOConfig(
            output_dir="unused", max_length=PAPER_MAX_LENGTH, bf16=False, use_cpu=True,
            **{checkpointing_keyword(): False},
        )
    # _prepare_dataset reads only `self._tokenizer` from the trainer.
    stand_in = SimpleNamespace(_tokenizer=tokenizer)
    prepared = DPOTrainer._prepare_dataset(stand_in, dataset, tokenizer, args, "train")
    return strip_trailing_eos(prepared, tokenizer.eos_token_id)


def _single_token_trainer_class():
    from trl import DPOTrainer

    class SingleTokenDPOTrainer(DPOTrainer):
        """``DPOTrainer`` whose completions are exactly the answer tokens.

        TRL appends EOS to each completion before tokenizing. This subclass
        lets TRL tokenize, then removes that trailing EOS id, so the margin
        of a pair compares the two answer tokens only.
        """

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            return strip_trailing_eos(prepared, self._tokenizer.eos_token_id)

    return SingleTokenDPOTrainer


def __getattr__(name):
    # Deferred so that importing this module does not import TRL.
    if name == "SingleTokenDPOTrainer":
        return _single_token_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class TRLSettings:
    """Hyperparameters of one ``DPOTrainer`` run.

    The defaults are the hyperparameters of Im & Li (2025, Appendix A):
    AdamW, beta 0.1, batch size 100, one epoch, no gradient accumulation,
    weight decay 0, maximum sequence length 256.
    """

    loss_type: str = "sigmoid"  # TRL name: "sigmoid" (DPO), "ipo", "hinge" (SLiC)
    learning_rate: float = 1e-5  # the book's choice: Im & Li's value is missing from the text available
    beta: float = PAPER_BETA
    batch_size: int = PAPER_BATCH_SIZE
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 stops early: the smoke test runs a few steps only
    weight_decay: float = 0.0
    max_length: int = PAPER_MAX_LENGTH  # TRL 1.16's only length limit
    lr_scheduler_type: str = "constant"
    seed: int = 0
    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self):
        object.__setattr__(self, "loss_type", trl_loss_type(self.loss_type))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def checkpointing_keyword() -> str:
    """Return the ``DPOConfig`` field that switches activation checkpointing.

    transformers 5 renamed ``gradient_checkpointing`` to
    ``activation_checkpointing`` and warns on the old name; older releases
    only know the old one.
    """
    import dataclasses

    from trl import DPOConfig

    names = {field.name for field in dataclasses.fields(DPOConfig)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def dpo_config(settings: TRLSettings, output_dir: str | Path, eval_batch_size: int, deepspeed=None):
    """Build TRL's ``DPOConfig`` from :class:`TRLSettings`.

    Nothing is saved to ``output_dir`` (no checkpoints, no reports), and the
    reference log-probabilities are computed once with the initial model.
    """
    from trl import DPOConfig

    checkpointing = checkpointing_keyword()
    return DPOConfig(
        output_dir=str(output_dir),
        loss_type=[settings.loss_type],
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=int(settings.batch_size),
        per_device_eval_batch_size=int(eval_batch_size),
        gradient_accumulation_steps=1,
        num_train_epochs=settings.num_train_epochs,
        max_steps=int(settings.max_steps),
        optim="adamw_torch",
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=0,
        max_length=int(settings.max_length),
        precompute_ref_log_probs=True,
        seed=int(settings.seed),
        data_seed=int(settings.seed),
        use_cpu=settings.use_cpu,
        bf16=settings.bf16,
        **{checkpointing: settings.gradient_checkpointing},
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        deepspeed=deepspeed,
    )


@torch.no_grad()
def answer_log_probs(model, tokenizer, pairs: pd.DataFrame, *, batch_size: int = 16) -> torch.Tensor:
    """Return the next-token log-probabilities of the chosen and rejected answers.

    Each prompt is tokenized as TRL tokenizes it (``tokenizer(prompt)``),
    right-padded, and the log-softmax of the logits at its last real token
    is read at the first token id of each answer.

    Returns
    -------
    torch.Tensor
        float64 tensor of shape (n, 2): column 0 the chosen answer, column 1
        the rejected one.
    """
    chosen_ids = _answer_ids(tokenizer, pairs["chosen"])
    rejected_ids = _answer_ids(tokenizer, pairs["rejected"])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    prompts = pairs["prompt"].tolist()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(prompts), batch_size):
        encoded = [tokenizer(text=prompt)["input_ids"] for prompt in prompts[start : start + batch_size]]
        lengths = torch.tensor([len(ids) for ids in encoded])
        width = int(lengths.max())
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        last = logits[torch.arange(len(encoded)), lengths.to(device) - 1]  # (b, V)
        log_probs = torch.log_softmax(last.float(), dim=-1).double().cpu()
        index = torch.stack(
            [chosen_ids[start : start + len(encoded)], rejected_ids[start : start + len(encoded)]], dim=1
        )
        out.append(torch.gather(log_probs, 1, index))  # (b, 2)
    model.train(was_training)
    return torch.cat(out)


def _answer_ids(tokenizer, answers) -> torch.Tensor:
    ids = []
    for answer in answers:
        tokens = tokenizer(text=answer, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise ValueError(f"answer {answer!r} is {len(tokens)} tokens for this tokenizer; expected one")
        ids.append(tokens[0])
    return torch.tensor(ids, dtype=torch.long)


def implicit_margins(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """Return ``beta * [(pi_w - ref_w) - (pi_l - ref_l)]`` for (n, 2) log-probabilities."""
    if policy.shape != reference.shape or policy.shape[-1] != 2:
        raise ValueError(
            f"policy and reference must both have shape (n, 2), got {tuple(policy.shape)} "
            f"and {tuple(reference.shape)}"
        )
    ratios = policy - reference
    return beta * (ratios[..., 0] - ratios[..., 1])


def accuracy_and_ties(margins) -> tuple[float, float]:
    """Return the fraction of strictly positive margins and the fraction exactly 0.

    A tie (margin exactly 0) is neither right nor wrong: it is counted apart,
    so ``accuracy + ties + errors = 1``.
    """
    margins = torch.as_tensor(margins)
    if margins.numel() == 0:
        raise ValueError("margins is empty")
    return float((margins > 0).double().mean()), float((margins == 0).double().mean())


@dataclass
class TRLRunResult:
    """Measurements of one fine-tuning run on a noisy training set."""

    accuracy: float  # fraction of test pairs with a strictly positive margin
    ties: float  # fraction of test pairs with margin exactly 0
    initial_ties: float  # the same fraction before training (1.0: policy = reference)
    trl_eval_accuracy: float  # TRL's eval rewards/accuracies on the same test pairs
    trl_initial_eval_accuracy: float  # TRL's value before training (0.0 when all margins are 0)
    near_zero: float  # fraction of test margins with |r| < 1e-4, where float noise can flip a sign
    steps: int
    train_loss: float
    initial_train_loss: float  # TRL loss on the first batch: log 2, 1 / (4 beta^2) or 1
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def run_dpo(
    train_pairs: pd.DataFrame,
    test_pairs: pd.DataFrame,
    settings: TRLSettings,
    *,
    model_id: str | None = None,
    output_dir: str | Path | None = None,
    deepspeed=None,
    model_loader=None,
    check_initial: bool = True,
) -> TRLRunResult:
    """Fine-tune a fresh copy of the model on ``train_pairs`` and measure it on ``test_pairs``.

    Parameters
    ----------
    train_pairs
        Possibly noisy preference pairs (columns ``prompt``, ``chosen``, ``rejected``).
    test_pairs
        Clean held-out pairs.
    settings
        Hyperparameters (:class:`TRLSettings`).
    model_id
        Hugging Face id or folder; ``None`` loads the offline SmolLM2-135M-Instruct.
    output_dir
        Folder for TRL's run files (default: a temporary folder).
    deepspeed
        Path of a DeepSpeed config for multi-GPU runs under ``accelerate launch``.
    model_loader
        Callable ``model_id -> (model, tokenizer)``; default
        :func:`noisypo.models.load_causal_lm` (on CPU when ``settings.use_cpu``).
    check_initial
        Also run TRL's evaluation before training. Its ``rewards/accuracies``
        must read 0 there, because every margin is 0. ``False`` saves one
        pass over the test pairs and stores NaN.

    Returns
    -------
    TRLRunResult
    """
    import tempfile

    from transformers.trainer_callback import PrinterCallback

    from noisypo.models import load_causal_lm
    from noisypo.prefdata import to_dataset

    if len(train_pairs) == 0 or len(test_pairs) == 0:
        raise ValueError("train_pairs and test_pairs must both be non-empty")
    start = time.perf_counter()
    if model_loader is None:
        device = "cpu" if settings.use_cpu else None
        dtype = torch.bfloat16 if settings.bf16 else torch.float32
        model, tokenizer = load_causal_lm(model_id, device=device, dtype=dtype)
    else:
        model, tokenizer = model_loader(model_id)
    torch.manual_seed(settings.seed)

    eval_batch_size = len(test_pairs)  # one batch, so TRL's batch mean is the plain mean
    reference = answer_log_probs(model, tokenizer, test_pairs)

    with tempfile.TemporaryDirectory(prefix="noisypo-trl-") as scratch:
        config = dpo_config(settings, output_dir or scratch, eval_batch_size, deepspeed=deepspeed)
        trainer_class = _single_token_trainer_class()
        trainer = trainer_class(
            model=model,
            args=config,
            train_dataset=to_dataset(train_pairs),
            eval_dataset=to_dataset(test_pairs),
            processing_class=tokenizer,
        )
        # With tqdm off, transformers prints every log dict; the results are returned instead.
        trainer.remove_callback(PrinterCallback)
        initial_eval = trainer.evaluate() if check_initial else {"eval_rewards/accuracies": math.nan}
        output = trainer.train()
        final_eval = trainer.evaluate()
        history = [entry for entry in trainer.state.log_history if "loss" in entry]

    policy = answer_log_probs(trainer.model, tokenizer, test_pairs)
    margins = implicit_margins(policy, reference, settings.beta)
    accuracy, ties = accuracy_and_ties(margins)
    _, initial_ties = accuracy_and_ties(implicit_margins(reference, reference, settings.beta))
    return TRLRunResult(
        accuracy=accuracy,
        ties=ties,
        initial_ties=initial_ties,
        trl_eval_accuracy=float(final_eval["eval_rewards/accuracies"]),
        trl_initial_eval_accuracy=float(initial_eval["eval_rewards/accuracies"]),
        near_zero=float((margins.abs() < 1e-4).double().mean()),
        steps=int(output.global_step),
        train_loss=float(history[-1]["loss"]) if history else math.nan,
        initial_train_loss=float(history[0]["loss"]) if history else math.nan,
        seconds=time.perf_counter() - start,
    )


def prompt_token_lengths(tokenizer, prompts: Sequence[str]) -> np.ndarray:
    """Return the number of tokens of each prompt as TRL tokenizes it."""
    return np.array([len(tokenizer(text=prompt)["input_ids"]) for prompt in prompts])
