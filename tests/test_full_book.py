"""The whole book builds strictly with the ci profile, every chapter executed.

The build itself is the session fixture ``built_book`` in conftest.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sync_notebooks  # noqa: E402
from conftest import toc_files  # noqa: E402


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


@pytest.mark.slow
def test_persona_pages_carry_attribution(built_book):
    for file in toc_files():
        source = (ROOT / f"{file}.md").read_text()
        if "persona_embeddings" in source or "load_behaviour" in source or "experiments.persona" in source:
            html = (built_book / f"{file}.html").read_text()
            assert "CC BY 4.0" in html, f"{file} uses the persona data without its attribution"
