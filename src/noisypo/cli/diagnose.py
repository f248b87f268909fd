"""``python -m noisypo diagnose``: predict how much label noise a labelled embedding set tolerates."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

NAME = "diagnose"
HELP = (
    "Fit the two-class vMF model to labelled embeddings (a .npz, .npy or .parquet file, "
    "or a persona behaviour) and report kappa, gamma, phi, n and the predicted noise tolerance."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from noisypo.diagnose import MIN_PER_CLASS

    parser.add_argument(
        "source",
        help="embedding file (.npz with arrays x and labels; .npy with --labels; .parquet with a "
        "label column) or a persona behaviour name such as 'narcissism' or 'Behavior 1'",
    )
    parser.add_argument("--labels", help="label file for a .npy source (.npy, or text with one label per line)")
    parser.add_argument("--x-key", help="name of the embedding array or column (default: x, embeddings, ...)")
    parser.add_argument("--labels-key", help="name of the label array or column (default: labels, label, s, y)")
    parser.add_argument("--model", dest="model_id", help="model id for a persona behaviour (default: the book's model)")
    parser.add_argument("--limit", type=int, help="class-stratified subsample size for a persona behaviour")
    parser.add_argument("--threshold", type=float, default=0.9, help="accuracy that defines the tolerance (default 0.9)")
    parser.add_argument("--delta", type=float, default=0.05, help="failure probability of the guaranteed accuracy (default 0.05)")
    parser.add_argument(
        "--train-fraction", type=float, default=1.0,
        help="fraction of the samples that train the model, e.g. 0.9 for a 90/10 split (default 1)",
    )
    parser.add_argument(
        "--min-per-class", type=int, default=MIN_PER_CLASS,
        help=f"smallest accepted number of samples per class (default {MIN_PER_CLASS})",
    )
    parser.add_argument("--epsilon-step", type=float, default=0.01, help="spacing of the flip-rate grid on [0, 1/2] (default 0.01)")
    parser.add_argument("--draws", type=int, default=4000, help="Monte-Carlo draws per flip rate (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo draws and the persona subsample")
    parser.add_argument(
        "--center", action="store_true",
        help="subtract the mean embedding before the fit (for training on centred embeddings)",
    )
    parser.add_argument(
        "--dimension", choices=("effective", "ambient"), default="effective",
        help="vMF model for the prediction: refitted in the effective dimension that matches the spread "
        "along the mean difference (default), or in the embedding dimension",
    )
    parser.add_argument("--plot", metavar="PNG", help="write a plot of accuracy against the flip rate to this file")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON to this file")


def run(args: argparse.Namespace) -> int:
    from noisypo import diagnose as diagnostic

    # Checked before loading, which for a persona behaviour embeds with the model.
    ranges = (
        ("--epsilon-step", args.epsilon_step, 0 < args.epsilon_step <= 0.5, "(0, 0.5]"),
        ("--train-fraction", args.train_fraction, 0 < args.train_fraction <= 1, "(0, 1]"),
        ("--threshold", args.threshold, 0 < args.threshold < 1, "(0, 1)"),
    )
    for option, value, valid, interval in ranges:
        if not valid:
            print(f"error: invalid {option}={value}: expected a value in {interval}", file=sys.stderr)
            return 2
    epsilons = np.unique(np.append(np.arange(0.0, 0.5, args.epsilon_step), 0.5))
    try:
        data = diagnostic.load_embeddings(
            args.source,
            labels=args.labels,
            x_key=args.x_key,
            labels_key=args.labels_key,
            model_id=args.model_id,
            limit=args.limit,
            seed=args.seed,
        )
        report = diagnostic.diagnose(
            data.x,
            data.labels,
            threshold=args.threshold,
            epsilons=epsilons,
            delta=args.delta,
            train_fraction=args.train_fraction,
            min_per_class=args.min_per_class,
            draws=args.draws,
            seed=args.seed,
            source=data.source,
            center=args.center,
            dimension=args.dimension,
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(report.summary())
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        figure = diagnostic.plot_diagnosis(report)
        figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"plot written to {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2)
        print(f"report written to {args.json}")
    return 0
