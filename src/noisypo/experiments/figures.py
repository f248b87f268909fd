"""Figure helpers for the controlled experiment: accuracy against the noise rate."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LOSS_LABELS", "plot_accuracy_panels"]

LOSS_LABELS = {"dpo": "DPO", "ipo": "IPO", "slic": "SLiC"}


def plot_accuracy_panels(
    summary: pd.DataFrame,
    curve: str,
    *,
    column: str = "accuracy_exact",
    epsilon_max: float = 0.5,
    axes=None,
    label_format: str = "{:g}",
    legend_title: str | None = None,
):
    """Draw accuracy against epsilon: one panel per loss, one curve per value of ``curve``.

    Parameters
    ----------
    summary
        Output of :func:`noisypo.experiments.controlled.summarize`.
    curve
        Column whose values get one curve each (``"kappa"`` or ``"n"``).
    column
        ``"accuracy_exact"`` or ``"accuracy_sampled"``; the band is plus or
        minus one standard error from ``column + "_se"``.
    epsilon_max
        Largest noise rate drawn.
    axes
        One matplotlib axis per loss; default: a new row of panels.
    label_format, legend_title
        Format of the curve labels and title of the legend.

    Returns
    -------
    numpy.ndarray
        The axes, one per loss in the order of first appearance in ``summary``.
    """
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(summary["loss"]))
    if axes is None:
        _, axes = plt.subplots(1, len(losses), figsize=(3.4 * len(losses), 3.2), sharey=True, squeeze=False)
        axes = axes[0]
    values = sorted(summary[curve].unique())
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(values)))
    for ax, loss in zip(axes, losses):
        for color, value in zip(colors, values):
            rows = summary[(summary["loss"] == loss) & (summary[curve] == value) & (summary["epsilon"] <= epsilon_max + 1e-12)]
            rows = rows.sort_values("epsilon")
            mean, error = rows[column].to_numpy(), rows[column + "_se"].fillna(0.0).to_numpy()
            ax.plot(rows["epsilon"], mean, color=color, lw=1.4, label=label_format.format(value))
            ax.fill_between(rows["epsilon"], mean - error, mean + error, color=color, alpha=0.25, lw=0)
        ax.set(xlabel=r"noise rate $\epsilon$", title=LOSS_LABELS.get(loss, loss))
        ax.axhline(0.5, color="0.75", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(title=legend_title, frameon=False, fontsize=8, loc="lower left")
    return np.asarray(axes)
