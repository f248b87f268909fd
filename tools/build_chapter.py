"""Build one chapter alone, strictly, to check it while writing.

    python tools/build_chapter.py book/vmf.md [--profile ci]

The chapter is copied into a temporary book that has the real _config.yml,
references.bib and extensions, then built with ``jupyter-book build -W -n
--keep-going`` and fresh execution. Only references to *other* chapters
are tolerated (they cannot resolve in a one-page book); the full build
(`make book`) checks those. Exits with the build's status and prints where
the HTML and the execution reports are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".chapter-build"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", type=Path, help="path of a chapter, e.g. book/vmf.md")
    parser.add_argument("--profile", default="ci", help="NOISYPO_PROFILE for execution (default: ci)")
    parser.add_argument("--out", type=Path, help="build folder (default: a new temporary folder)")
    args = parser.parse_args()

    chapter = args.chapter.resolve()
    if not chapter.is_file():
        parser.error(f"chapter not found: {args.chapter}")
    if chapter.parent != ROOT / "book" or "format_name: myst" not in chapter.read_text()[:2000]:
        parser.error(f"not a chapter: {args.chapter} (expected a MyST notebook in book/)")
    out = args.out or Path(tempfile.mkdtemp(prefix=f"chapter-{chapter.stem}-"))
    if out.exists() and any(out.iterdir()):
        # Only a folder written by an earlier run of this tool is replaced.
        if not (out / MARKER).is_file():
            parser.error(f"--out {out} exists and was not made by this tool; choose another folder")
        shutil.rmtree(out)
    (out / "book").mkdir(parents=True)
    (out / MARKER).write_text("written by tools/build_chapter.py; replaced on the next run\n")

    shutil.copy(chapter, out / "book" / chapter.name)
    for name in ("references.bib",):
        shutil.copy(ROOT / name, out / name)
    shutil.copytree(ROOT / "_ext", out / "_ext")
    shutil.copytree(ROOT / "_static", out / "_static")
    twin = ROOT / "notebooks" / f"{chapter.stem}.ipynb"
    (out / "notebooks").mkdir()
    if twin.is_file():
        shutil.copy(twin, out / "notebooks" / twin.name)
    shutil.copy(ROOT / "book" / "bibliography.md", out / "book" / "bibliography.md")

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "force"
    sphinx_config = config["sphinx"]["config"]
    sphinx_config["suppress_warnings"] = list(sphinx_config.get("suppress_warnings", [])) + [
        "ref.ref", "ref.doc", "ref.numref", "ref.eq", "myst.xref_missing", "ref.any",
    ]
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    toc = {
        "format": "jb-book",
        "root": f"book/{chapter.stem}",
        "chapters": [{"file": "book/bibliography"}],
    }
    (out / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))

    # As in `make book`: no progress-bar widgets in the built page.
    env = dict(os.environ, NOISYPO_PROFILE=args.profile, TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    # The jupyter-book script installed beside this Python, as `make book` uses.
    script = Path(sys.executable).with_name("jupyter-book")
    command = [str(script), "build", str(out), "-W", "-n", "--keep-going"]
    status = subprocess.call(command, env=env)
    print(f"\nHTML: {out / '_build' / 'html' / 'book' / (chapter.stem + '.html')}")
    print(f"reports (tracebacks of failed cells): {out / '_build' / 'html' / 'reports'}")
    print(f"build status: {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
