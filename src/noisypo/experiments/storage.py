"""A results folder that survives interruption: one file per finished configuration.

Layout of a folder written by :class:`ResultStore`::

    run.json              sidecar: config, seed, device, package versions, times
    parts/<key>.parquet   one table per finished configuration
    trials.parquet        all parts together (written by :meth:`ResultStore.finish`)
    summary.csv           means and standard errors (written by :meth:`ResultStore.finish`)

A part is written to a temporary name and renamed, so a killed run leaves
either a complete part or none. Rerunning with the same config skips the
parts that exist. A different config in the same folder is rejected, so
results of two grids never mix.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

__all__ = ["ResultStore", "package_versions"]

_PACKAGES = ("noisypo", "torch", "numpy", "scipy", "pandas", "pyarrow")
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def package_versions() -> dict[str, str]:
    """Return the installed versions of the packages behind a result, and Python's."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """A folder of per-configuration result tables with a JSON sidecar.

    Parameters
    ----------
    folder
        Where the results go; created if missing.
    config
        JSON-serialisable description of the whole grid. It identifies the
        run: an existing folder whose ``run.json`` contains another config
        raises ``ValueError``.
    device
        Device description stored in the sidecar (for example
        ``"cuda (NVIDIA H100)"``).
    """

    def __init__(self, folder: str | os.PathLike, config: Mapping[str, Any], *, device: str) -> None:
        self.folder = Path(folder)
        self.parts = self.folder / "parts"
        self.sidecar = self.folder / "run.json"
        self.config = json.loads(json.dumps(dict(config)))  # normalise tuples to lists
        self.parts.mkdir(parents=True, exist_ok=True)
        if self.sidecar.exists():
            stored = json.loads(self.sidecar.read_text("utf-8"))
            if stored.get("config") != self.config:
                raise ValueError(
                    f"{self.folder} contains results of another config; "
                    "choose a new --out folder or delete this one to start over"
                )
            self.meta = stored
            self.meta.setdefault("resumed", []).append(_now())
        else:
            self.meta = {
                "config": self.config,
                "device": device,
                "versions": package_versions(),
                "command": " ".join(sys.argv),
                "started": _now(),
                "finished": None,
            }
        self._write_sidecar()

    def _write_sidecar(self) -> None:
        temporary = self.sidecar.with_suffix(".json.part")
        temporary.write_text(json.dumps(self.meta, indent=2) + "\n", "utf-8")
        os.replace(temporary, self.sidecar)

    def part_path(self, key: str) -> Path:
        """Return the file of the configuration ``key`` (letters, digits, ``._=+-``)."""
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"invalid part key {key!r}: use letters, digits and ._=+- only")
        return self.parts / f"{key}.parquet"

    def has(self, key: str) -> bool:
        """Return whether the configuration ``key`` is finished (its part exists)."""
        return self.part_path(key).exists()

    def save_part(self, key: str, table: pd.DataFrame) -> Path:
        """Write one configuration's table atomically and return its path."""
        path = self.part_path(key)
        temporary = path.with_suffix(".parquet.part")
        table.to_parquet(temporary, index=False)
        os.replace(temporary, path)
        return path

    def load_parts(self) -> pd.DataFrame:
        """Return all finished parts as one table (empty if none)."""
        paths = sorted(self.parts.glob("*.parquet"))
        if not paths:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)

    def finish(self, trials: pd.DataFrame, summary: pd.DataFrame, **extra: Any) -> None:
        """Write the full trial table, the summary and the finishing time to the folder."""
        trials.to_parquet(self.folder / "trials.parquet", index=False)
        summary.to_csv(self.folder / "summary.csv", index=False)
        self.meta["finished"] = _now()
        self.meta.update(extra)
        self._write_sidecar()
