"""``python -m noisypo embed``: compute and cache persona embeddings, print their statistics."""

from __future__ import annotations

import argparse

NAME = "embed"
HELP = (
    "Embed persona questions with a causal LM (final-norm hidden state at the last prompt "
    "token), cache them, and print norm and cosine statistics."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--behaviour",
        action="append",
        required=True,
        help="behaviour file name, 'Behavior 1', 'Behavior 2' or 'all'; repeat for several",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="questions per behaviour (class-stratified); default: all"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample (default 0)")
    parser.add_argument(
        "--model", default=None, help="Hugging Face model id or folder (default: offline SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass (default 32)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--refresh", action="store_true", help="recompute even when a cache file exists")


def run(args: argparse.Namespace) -> int:
    from noisypo import persona
    from noisypo.embeddings import cache_path, norm_cosine_statistics, persona_embeddings

    names: list[str] = []
    for item in args.behaviour:
        names.extend(persona.BEHAVIOURS if item == "all" else [item])
    for name in names:
        data = persona_embeddings(
            name,
            args.model,
            limit=args.limit,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            refresh=args.refresh,
        )
        stats = norm_cosine_statistics(data.x, data.labels)
        print(
            f"{data.behaviour}: n={data.n} d={data.d} "
            + " ".join(f"{key}={value:.6g}" for key, value in stats.items())
        )
        print(f"  cache: {cache_path(name, args.model, limit=args.limit, seed=args.seed)}")
    return 0
