"""``python -m noisypo profile``: print the active run profile and its sizes."""

from __future__ import annotations

import argparse

from noisypo import profiles

NAME = "profile"
HELP = "Print the active run profile, the device, and the sizes of one chapter or of all."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chapter", nargs="?", help="chapter name in profiles.toml (default: all)")
    parser.add_argument(
        "--name-only", action="store_true", help="print only the profile name (ci, cpu or gpu)"
    )


def run(args: argparse.Namespace) -> int:
    if args.name_only:
        print(profiles.current_profile().name)
        return 0
    print(profiles.describe())
    names = [args.chapter] if args.chapter else profiles.chapters()
    for name in names:
        table = profiles.sizes(name)
        print(f"[{name}] " + ", ".join(f"{key}={value}" for key, value in table.items()))
    return 0
