"""Command-line entry point: ``python -m noisypo <command> ...``.

Each module in :mod:`noisypo.cli` is one command. It defines ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from noisypo import cli
from noisypo.persona import PersonaDataError


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with one sub-command per module in :mod:`noisypo.cli`."""
    parser = argparse.ArgumentParser(
        prog="python -m noisypo",
        description="Experiments and tools of the noisy-feedback preference optimization book.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda item: item.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"noisypo.cli.{info.name}")
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit status.

    Invalid input that a command rejects (ValueError, KeyError, a missing
    file or persona data) ends with a one-line ``error:`` message and exit
    status 2 instead of a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, PersonaDataError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
