"""``python -m noisypo controlled``: run the controlled vMF experiment grids.

Example::

    python -m noisypo controlled --profile gpu --out results/controlled-gpu

writes one folder per grid (``mislabeled-kappa``, ``mislabeled-n``,
``uncertain-kappa``, ``uncertain-n``) under ``--out``, each with
``run.json``, ``parts/``, ``trials.parquet`` and ``summary.csv``. Rerunning
the same command after an interruption skips the finished configurations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noisypo import profiles

NAME = "controlled"
HELP = "Run the controlled vMF experiment (DPO/IPO/SLiC under label noise) and store its results."

_SWEEPS = ("kappa", "n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=profiles.PROFILES,
                        help="sizes from profiles.toml [controlled.<profile>] (default: the active profile)")
    parser.add_argument("--out", type=Path, required=True,
                        help="results folder; one subfolder per noise model and sweep")
    parser.add_argument("--noise", choices=("mislabeled", "uncertain", "both"), default="both",
                        help="noise model(s) to run (default: both)")
    parser.add_argument("--sweep", choices=(*_SWEEPS, "both"), default="both",
                        help="vary kappa at fixed n, n at fixed kappa, or both (default: both)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), help="override the profile's dtype")
    parser.add_argument("--trials", type=int, help="override the number of trials per configuration")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-exact", action="store_true",
                        help="skip the exact accuracy from the risk integral (faster)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from noisypo.experiments.controlled import run_controlled, sweep_configs

    profile = args.profile or profiles.current_profile().name
    sizes = profiles.sizes("controlled", profile)
    device = args.device or profiles.default_device()
    noise_models = ("mislabeled", "uncertain") if args.noise == "both" else (args.noise,)
    sweeps = _SWEEPS if args.sweep == "both" else (args.sweep,)
    print(f"profile {profile}, device {device}, output {args.out}")

    overrides = {}
    if args.dtype:
        overrides["dtype"] = args.dtype
    if args.trials is not None:
        overrides["trials"] = args.trials
    if args.no_exact:
        overrides["exact"] = False
    for noise_model in noise_models:
        configs = sweep_configs(sizes, noise_model, device=device, seed=args.seed)
        for sweep in sweeps:
            config = configs[sweep].replace(**overrides)
            folder = args.out / f"{noise_model}-{sweep}"
            results = run_controlled(config, folder, progress=not args.no_progress)
            print(f"{noise_model}-{sweep}: {len(results.trials)} runs in {results.seconds:.1f} s -> {folder}")
    return 0
