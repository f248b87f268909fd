"""Write a variant of _config.yml for a special build.

    python tools/config_variant.py --hide-solutions OUT.yml   # course hand-out
    python tools/config_variant.py --offline-mathjax OUT.yml  # no CDN for math

`--hide-solutions` sets sphinx-exercise's ``hide_solutions`` so that every
solution is left out (`make student`). `--offline-mathjax` adds the
``sphinx-mathjax-offline`` extension, which serves MathJax 3 from the built
site instead of a CDN, so that math renders in a browser with no network
(the browser test uses it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def variant(hide_solutions: bool = False, offline_mathjax: bool = False) -> dict:
    """Return _config.yml as a dict with the chosen changes applied."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = config["sphinx"]
    if hide_solutions:
        config["title"] = f"{config['title']} (exercises without solutions)"
        sphinx["config"]["hide_solutions"] = True
    if offline_mathjax:
        sphinx["extra_extensions"] = list(sphinx["extra_extensions"]) + ["sphinx-mathjax-offline"]
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description="Write a variant of _config.yml.")
    parser.add_argument("output", type=Path, help="where to write the YAML file")
    parser.add_argument("--hide-solutions", action="store_true", help="leave out exercise solutions")
    parser.add_argument("--offline-mathjax", action="store_true", help="serve MathJax from the site")
    args = parser.parse_args()
    config = variant(args.hide_solutions, args.offline_mathjax)
    args.output.write_text(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
