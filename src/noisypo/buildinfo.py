"""Versions and platform of the environment that executes the book."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

PACKAGES = (
    "noisypo", "torch", "numpy", "scipy", "sympy", "pandas", "matplotlib",
    "transformers", "trl", "accelerate", "jupyter-book", "myst-nb", "jupytext",
    "sphinx", "sphinx-proof", "sphinx-exercise", "sphinxcontrib-bibtex",
)


def versions_table(packages: tuple[str, ...] = PACKAGES) -> pd.DataFrame:
    """Return a table of installed versions ("not installed" where missing)."""
    rows = [("python", platform.python_version()), ("platform", platform.platform())]
    for name in packages:
        try:
            rows.append((name, version(name)))
        except PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"]).set_index("package")
