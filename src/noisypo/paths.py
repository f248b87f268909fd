"""Where the package keeps downloads, converted models and cached results."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV_VAR = "NOISYPO_CACHE"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder in the user cache.

    The root is ``$NOISYPO_CACHE`` when set, else the platform's user cache
    folder for ``noisypo`` (``~/.cache/noisypo`` on Linux).
    """
    root = os.environ.get(CACHE_ENV_VAR) or platformdirs.user_cache_dir("noisypo")
    path = Path(root).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
