"""The whole book builds strictly with the ci profile, every chapter executed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sync_notebooks  # noqa: E402


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [entry["file"] for entry in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    book = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, book / name)
    for folder in ("book", "notebooks", "_ext"):
        shutil.copytree(ROOT / folder, book / folder)
    env = dict(os.environ, NOISYPO_PROFILE="ci", CI="true")
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "book", f"BOOK_DIR={book}"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line and "Kernel is running" not in line]
    assert result.returncode == 0, "\n".join(warnings[-30:]) or log[-3000:]
    return book / "_build" / "html"


@pytest.mark.slow
def test_every_chapter_is_built_and_executed(built_book):
    for file in toc_files():
        page = built_book / f"{file}.html"
        assert page.is_file(), f"{page} missing"
        source = (ROOT / f"{file}.md").read_text()
        if "format_name: myst" in source[:2000] and "```{code-cell}" in source:
            assert 'class="cell_output' in page.read_text(), f"{file} shows no executed output"


@pytest.mark.slow
def test_chapters_print_ci_profile(built_book):
    for file in toc_files():
        source = (ROOT / f"{file}.md").read_text()
        if "profiles.announce(" in source:
            assert "profile ci" in (built_book / f"{file}.html").read_text(), file


@pytest.mark.slow
def test_colab_links_open_committed_twins(built_book):
    url, branch = sync_notebooks.repository()
    colab = url.replace("https://github.com", "https://colab.research.google.com/github")
    for file in toc_files():
        source = ROOT / f"{file}.md"
        if not sync_notebooks.is_notebook_source(source):
            continue
        html = (built_book / f"{file}.html").read_text()
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html))
        expected = f"{colab}/blob/{branch}/notebooks/{source.stem}.ipynb"
        assert links == {expected}, f"{file}: {links}"
        twin = ROOT / "notebooks" / f"{source.stem}.ipynb"
        assert twin.read_text() == sync_notebooks.render_twin(source)
