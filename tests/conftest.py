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
