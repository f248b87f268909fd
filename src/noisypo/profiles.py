"""Run profiles: the sizes every chapter and experiment reads.

A profile is one of

``ci``
    The smallest sizes. The test suite and CI execute every chapter with it.
``cpu``
    The default without a GPU: reduced sizes whose figures still show the
    effect a chapter is about.
``gpu``
    Paper scale, for a CUDA machine such as a Colab GPU runtime.

The profile is ``gpu`` when CUDA is available and ``cpu`` otherwise; the
environment variable ``NOISYPO_PROFILE`` overrides the choice. All sizes
live in ``profiles.toml`` beside this module, one table per chapter and
profile, so a chapter never hard-codes a size in a cell.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PROFILES = ("ci", "cpu", "gpu")
ENV_VAR = "NOISYPO_PROFILE"


@dataclass(frozen=True)
class ProfileChoice:
    """The active profile and why it was chosen."""

    name: str
    reason: str


def current_profile() -> ProfileChoice:
    """Return the active profile: ``$NOISYPO_PROFILE`` if set, else by device.

    Raises
    ------
    ValueError
        If ``NOISYPO_PROFILE`` names no known profile.
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(
                f"invalid {ENV_VAR}={forced!r}: expected one of {', '.join(PROFILES)}"
            )
        return ProfileChoice(forced, f"set by {ENV_VAR}")
    if _cuda_available():
        return ProfileChoice("gpu", "CUDA is available")
    return ProfileChoice("cpu", "no CUDA device found")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@lru_cache(maxsize=1)
def _all_sizes() -> Mapping[str, Any]:
    text = resources.files("noisypo").joinpath("profiles.toml").read_text("utf-8")
    return tomllib.loads(text)


def chapters() -> tuple[str, ...]:
    """Return the names of the chapters that have sizes in ``profiles.toml``."""
    return tuple(sorted(_all_sizes()))


def sizes(chapter: str, profile: str | None = None) -> Mapping[str, Any]:
    """Return the read-only sizes of ``chapter`` under ``profile``.

    Parameters
    ----------
    chapter
        A table name in ``profiles.toml`` (for example ``"vmf"``).
    profile
        ``"ci"``, ``"cpu"`` or ``"gpu"``; default: :func:`current_profile`.

    Raises
    ------
    KeyError
        If the chapter or its table for that profile is missing.
    """
    name = profile or current_profile().name
    if name not in PROFILES:
        raise ValueError(f"invalid profile {name!r}: expected one of {', '.join(PROFILES)}")
    table = _all_sizes()
    if chapter not in table:
        raise KeyError(
            f"no sizes for chapter {chapter!r} in profiles.toml; known: {', '.join(sorted(table))}"
        )
    if name not in table[chapter]:
        raise KeyError(f"chapter {chapter!r} has no [{chapter}.{name}] table in profiles.toml")
    return MappingProxyType(dict(table[chapter][name]))


def default_device() -> str:
    """Return ``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    return "cuda" if _cuda_available() else "cpu"


def describe() -> str:
    """Return three lines naming the profile, the device and the versions."""
    import torch

    from noisypo import __version__

    choice = current_profile()
    if _cuda_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    return (
        f"profile {choice.name} ({choice.reason})\n"
        f"device  {device}\n"
        f"noisypo {__version__}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def announce(chapter: str) -> Mapping[str, Any]:
    """Print the profile line and the chapter's sizes; return the sizes.

    Every chapter calls this in its first visible cell so that a reader sees
    which profile produced the numbers on the page.
    """
    table = sizes(chapter)
    print(describe())
    if table:
        print("sizes   " + ", ".join(f"{key}={value}" for key, value in table.items()))
    return table
