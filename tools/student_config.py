"""Write a copy of _config.yml that hides every exercise solution.

    python tools/student_config.py _config_student.yml

`make student` builds the book with it into _build/student/html, for a
course that hands out the exercises without their solutions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python tools/student_config.py OUTPUT.yml", file=sys.stderr)
        return 2
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = f"{config['title']} (exercises without solutions)"
    config["sphinx"]["config"]["hide_solutions"] = True
    Path(sys.argv[1]).write_text(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
