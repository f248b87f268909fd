"""``python -m noisypo persona``: the persona experiment (GPO under label noise on real data).

Examples::

    # fixed backbone: every loss, noise model, noise rate and seed
    python -m noisypo persona fixed --profile cpu --out results/local/persona-fixed

    # full fine-tuning with TRL on one GPU (paper scale, SmolLM2-135M-Instruct)
    python -m noisypo persona trl --profile gpu --out results/persona/trl-smollm2-mislabeled

    # the paper's Llama-3.1-8B with DeepSpeed ZeRO-3 on 4 GPUs: 25 pairs per
    # GPU make the paper's global batch of 100 (set num_processes: 4 in the yaml)
    accelerate launch --config_file configs/accelerate_zero3.yaml -m noisypo persona trl \\
        --profile gpu --model meta-llama/Llama-3.1-8B --bf16 --batch-size 25 \\
        --out results/persona/trl-llama8b-mislabeled

    # separation of each behaviour
    python -m noisypo persona separation --profile cpu

A results folder holds ``run.json`` (config, device, package versions),
``parts/`` (one file per finished behaviour or run), ``trials.parquet`` and
``summary.csv``; rerunning the same command skips the finished parts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noisypo import profiles

NAME = "persona"
HELP = "Run the persona experiment: fixed-backbone GPO sweeps, TRL fine-tuning, separation."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=("fixed", "trl", "separation"),
                        help="fixed: last-layer sweep on cached embeddings; trl: full fine-tuning "
                             "with TRL's DPOTrainer; separation: class-mean distance and vMF fit")
    parser.add_argument("--profile", choices=profiles.PROFILES,
                        help="sizes from profiles.toml [persona.<profile>] (default: the active profile)")
    parser.add_argument("--out", type=Path,
                        help="results folder (default: a folder in the noisypo cache named by the config)")
    parser.add_argument("--model", help="Hugging Face model id or folder (default: offline SmolLM2-135M-Instruct)")
    parser.add_argument("--behaviour", action="append",
                        help="behaviour to run, e.g. 'Behavior 1' or 'narcissism'; repeat for several "
                             "(default: the profile's)")
    parser.add_argument("--noise", choices=("mislabeled", "uncertain"),
                        help="noise model of the TRL runs (default: the profile's trl_noise)")
    parser.add_argument("--loss", action="append", choices=("dpo", "ipo", "slic"),
                        help="loss of the TRL runs; repeat for several (default: the profile's)")
    parser.add_argument("--epsilon", type=float, action="append",
                        help="noise rate of the TRL runs; repeat for several (default: the profile's)")
    parser.add_argument("--learning-rate", type=float, help="learning rate of the TRL runs")
    parser.add_argument("--batch-size", type=int,
                        help="pairs per device and step in the TRL runs; the global batch is this times "
                             "the number of processes (default: the profile's trl_batch_size)")
    parser.add_argument("--bf16", action="store_true", help="train in bfloat16 mixed precision (GPU only)")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON config, for runs under `accelerate launch`")


def run(args: argparse.Namespace) -> int:
    from noisypo.experiments import persona as experiment

    profile = args.profile or profiles.current_profile().name
    sizes = dict(profiles.sizes("persona", profile))
    print(f"sizes from [persona.{profile}] in profiles.toml")
    print(profiles.describe())

    if args.mode == "separation":
        for behaviour in args.behaviour or sizes["behaviours"]:
            data = experiment.load_persona_data(behaviour, limit=int(sizes["limit"]) or None, model_id=args.model)
            values = experiment.separation(data.x, data.labels)
            print(f"{data.behaviour}: " + ", ".join(f"{key}={value:.6g}" for key, value in values.items()))
        return 0

    if args.mode == "fixed":
        if args.behaviour:
            sizes["behaviours"] = args.behaviour
        trials = experiment.run_fixed_backbone(sizes, folder=args.out, model_id=args.model)
    else:
        overrides = {
            "trl_behaviours": args.behaviour,
            "trl_noise": args.noise,
            "trl_losses": args.loss,
            "trl_epsilons": args.epsilon,
            "trl_learning_rate": args.learning_rate,
            "trl_batch_size": args.batch_size,
        }
        sizes.update({key: value for key, value in overrides.items() if value is not None})
        sizes["trl_bf16"] = args.bf16
        trials = experiment.run_trl_grid(sizes, folder=args.out, model_id=args.model, deepspeed=args.deepspeed)
    summary = experiment.summarize(trials)
    print(summary.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    return 0
