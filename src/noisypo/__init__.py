"""Helper package for the companion book to Im & Li (2025).

"How Well Can Preference Optimization Generalize Under Noisy Feedback?"
studies DPO, IPO and SLiC on von Mises-Fisher embeddings under label noise.
Each module holds the code of one part of the book; see the book's chapters
for the derivations behind them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("noisypo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
