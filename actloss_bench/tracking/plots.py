"""Per-run figures (logged to ``plots/``): drawing only; the numbers come from metrics.py."""

from __future__ import annotations

from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actloss_bench.engine.metrics import reliability_bins  # noqa: E402


def _series(history: List[Dict[str, float]], prefix: str) -> Dict[str, List[float]]:
    keys = sorted({k for h in history for k in h if k.startswith(prefix)},
                  key=lambda k: int(k.rsplit("_", 1)[1]))
    return {k: [h.get(k, np.nan) for h in history] for k in keys}


def run_overview(history: List[Dict[str, float]], predictions: Optional[pd.DataFrame],
                 title: str) -> plt.Figure:
    """Loss curves, reliability diagram (or predicted-vs-true), dead fraction, gradient norms."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    epochs = np.arange(1, len(history) + 1)

    ax = axes[0, 0]
    for key in ("train/loss", "val/loss"):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], label=key)
    ax.set(title="loss", xlabel="epoch")
    ax.legend()

    ax = axes[0, 1]
    if predictions is not None and "prob_0" in predictions:
        probs = predictions.filter(like="prob_").to_numpy()
        correct = probs.argmax(1) == predictions["target"].to_numpy()
        conf, acc, count = reliability_bins(correct, probs.max(1))
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.plot(conf, acc, "o-")
        ax.set(title="reliability (test, top label)", xlabel="confidence", ylabel="accuracy",
               xlim=(0, 1), ylim=(0, 1))
    elif predictions is not None:
        ax.scatter(predictions["target"], predictions["prediction"], s=4, alpha=0.5)
        ax.set(title="test predictions", xlabel="target", ylabel="prediction")
    else:
        ax.set(title="no test predictions (run diverged)")

    ax = axes[1, 0]
    for key, values in _series(history, "dead/layer_").items():
        ax.plot(epochs, values, label=key.split("/")[1])
    ax.set(title="dead fraction per hidden layer", xlabel="epoch", ylim=(-0.02, 1.02))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)

    ax = axes[1, 1]
    for key, values in _series(history, "grad_norm/layer_").items():
        ax.plot(epochs, values, label=key.split("/")[1])
    ax.set(title="weight-gradient norm per layer", xlabel="epoch", yscale="log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)

    fig.suptitle(title, fontsize=10)
    # Fixed margins: tight_layout would double the cost of the figure (~0.12 s per run).
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.07, top=0.9, hspace=0.4, wspace=0.25)
    return fig


def save(fig: plt.Figure, path) -> None:
    fig.savefig(path, dpi=80)
    plt.close(fig)
