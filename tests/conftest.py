"""Shared fixtures: the local persona data and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def persona_dir() -> Path:
    """The folder with the real persona files, named by NOISYPO_PERSONA_DIR."""
    folder = os.environ.get("NOISYPO_PERSONA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("set NOISYPO_PERSONA_DIR to a folder with the persona .jsonl files")
    return Path(folder)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point NOISYPO_CACHE at an empty folder for one test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NOISYPO_CACHE", str(cache))
    return cache


def toc_files() -> list[str]:
    """Return the document names of the book, root first, in _toc.yml order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [entry["file"] for entry in part["chapters"]]
    return files


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Build the whole book once per session with the ci profile and return its html folder.

    The copy uses MathJax served from the site (tools/config_variant.py
    --offline-mathjax) so that the browser test can render math with no
    network. The build runs through `make book`, strictly (-W -n), from a
    fresh execution cache. With NOISYPO_BUILT_BOOK=<html folder> the tests
    reuse that build instead.
    """
    import shutil
    import subprocess
    import sys

    reuse = os.environ.get("NOISYPO_BUILT_BOOK")
    if reuse:
        # A developer can point the site tests at an existing build's html folder.
        return Path(reuse)
    sys.path.insert(0, str(ROOT / "tools"))
    import config_variant
    import yaml

    book = tmp_path_factory.mktemp("book")
    for name in ("_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, book / name)
    for folder in ("book", "notebooks", "_ext", "_static"):
        shutil.copytree(ROOT / folder, book / folder)
    config = config_variant.variant(offline_mathjax=True)
    (book / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, NOISYPO_PROFILE="ci", CI="true")
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "book", f"BOOK_DIR={book}"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    log = result.stdout + result.stderr
    (ROOT / "_build").mkdir(exist_ok=True)
    (ROOT / "_build" / "test-book-build.log").write_text(log)
    warnings = [line for line in log.splitlines() if "WARNING" in line and "Kernel is running" not in line]
    assert result.returncode == 0, "\n".join(warnings[-30:]) or log[-3000:]
    return book / "_build" / "html"
