"""Report figures: effect sizes, learning curves, heatmaps, rankings, reliability diagrams.
Drawing only: every number is computed in report/build.py and report/stats.py."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actloss_bench.engine.metrics import reliability_bins  # noqa: E402
from actloss_bench.report.verdict import HOLDS, OPPOSITE, SMALLER, RuleResult  # noqa: E402

OUTCOME_COLOURS = {HOLDS: "tab:red", SMALLER: "tab:orange", OPPOSITE: "tab:blue"}


def _natural(key) -> tuple:
    """Sort key for param values: numbers by value (2 before 10), then text."""
    key = key if isinstance(key, tuple) else (key,)
    out = []
    for k in key:
        try:
            out.append((0, float(k), ""))
        except (TypeError, ValueError):
            out.append((1, 0.0, str(k)))
    return tuple(out)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def effect_plot(parts: List[RuleResult], path: Path) -> str:
    """One panel per part: the paired effect per condition (controls in grey, marked) with its
    interval, and the margin: a band beyond it for "worse" claims, around 0 for equivalence."""
    rows = [p.groups + p.controls for p in parts]
    fig, axes = plt.subplots(len(parts), 1, squeeze=False, figsize=(
        8, 1.2 + 1.3 * len(parts) + 0.25 * max([len(r) for r in rows] + [1])))
    for ax, r, groups in zip(axes[:, 0], parts, rows):
        ys = np.arange(len(groups))
        for y, g in zip(ys, groups):
            lo = g.ci_low if np.isfinite(g.ci_low) else g.mean
            hi = g.ci_high if np.isfinite(g.ci_high) else g.mean
            colour = "grey" if g.control is not None else OUTCOME_COLOURS.get(g.outcome, "k")
            # max(0, ...): an interval's end may sit a rounding error inside the mean.
            ax.errorbar(g.mean, y, xerr=[[max(0.0, g.mean - lo)], [max(0.0, hi - g.mean)]],
                        fmt="s" if g.control is not None else "o", color=colour, capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        left, right = ax.get_xlim()
        left, right = min(left, -r.margin * 1.2), max(right, r.margin * 1.2)
        if r.claim == "equivalent":
            ax.axvspan(-r.margin, r.margin, color="tab:green", alpha=0.1)
        else:
            ax.axvspan(r.margin, right, color="tab:red", alpha=0.08)
        ax.axvline(r.margin, color="tab:red", lw=0.6, ls=":")
        ax.set_xlim(left, right)
        ax.set_yticks(ys, [g.label + (" (control)" if g.control is not None else "")
                           for g in groups], fontsize=7)
        effect = "a - b" if r.claim == "equivalent" else "how much worse a is than b"
        ax.set_title(f"{r.name}\n{effect} ({r.metric_label}); margin {r.margin:g}; "
                     f"{r.word}", fontsize=8)
    return _save(fig, path)


def curves_plot(curves: Dict[tuple, Dict[tuple, pd.DataFrame]], metric: str,
                path: Path) -> str:
    """Per-epoch curves given as {facet: {line: frame(epoch -> mean, sem)}}: the mean over
    seeds with a band of +-1 standard error, one panel per facet (at most nine)."""
    facets = sorted(curves.items(), key=lambda kv: _natural(kv[0]))[:9]
    ncols = min(3, len(facets))
    nrows = int(np.ceil(len(facets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (facet, lines) in zip(axes.flat, facets):
        for cell, frame in lines.items():
            mean, sem = frame["mean"], frame["sem"]
            line, = ax.plot(mean.index, mean.to_numpy(), label=", ".join(map(str, cell)))
            ax.fill_between(mean.index, (mean - sem).to_numpy(), (mean + sem).to_numpy(),
                            color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(", ".join(facet) or metric, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"{metric} (mean ± s.e. over seeds)", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(facets):]:
        ax.set_visible(False)
    return _save(fig, path)


def heatmap_plot(table: pd.DataFrame, metric: str, transform: Optional[str], path: Path) -> str:
    """A rows x columns table of values, drawn with the value in each cell."""
    try:  # numeric axes in numeric order
        table = table.sort_index(key=lambda i: i.astype(float))
        table = table[sorted(table.columns, key=float)]
    except (TypeError, ValueError):
        pass
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * table.shape[1], 1.0 + 0.6 * table.shape[0]))
    im = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel(table.columns.name)
    ax.set_ylabel(table.index.name)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{transform + ' ' if transform else ''}{metric}")
    return _save(fig, path)


def ranking_plot(panels: List[Dict], path: Path) -> str:
    """One table per panel (``title``, ``means``, ``tied``, ``metric``, ``cols``): each cell the
    seed-mean metric, green where the choice is best or tied with the best of its column (by
    the interval against the margin), grey otherwise; rows ordered by how often they tie."""
    heights = [len(p["means"]) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(6.5, 0.9 * len(panels) + 0.32 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, p in zip(axes[:, 0], panels):
        means, tied = p["means"], p["tied"].astype(float)
        order = tied.mean(1).sort_values(ascending=False).index
        means, tied = means.loc[order], tied.loc[order]
        ax.imshow(tied.to_numpy(), cmap="Greens", aspect="auto", vmin=-0.3, vmax=1.3)
        ax.set_xticks(range(means.shape[1]), means.columns)
        ax.set_yticks(range(means.shape[0]), means.index, fontsize=7)
        ax.set_title(f"{p['title']}: {p['metric']} (green: best or tied with the best)",
                     fontsize=8)
        for (i, j), v in np.ndenumerate(means.to_numpy()):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7)
    axes[-1, 0].set_xlabel(panels[-1]["cols"])
    return _save(fig, path)


def reliability_plot(pooled: Dict[str, pd.DataFrame], path: Path) -> str:
    """Top-label reliability per cell, test predictions pooled over seeds."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for label, frame in pooled.items():
        probs = frame.filter(like="prob_").to_numpy()
        correct = probs.argmax(1) == frame["target"].to_numpy()
        conf, acc, count = reliability_bins(correct, probs.max(1))
        keep = count > 0
        ax.plot(conf[keep], acc[keep], "o-", ms=3, label=label)
    ax.set(xlabel="confidence (top label)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="reliability, test split (seeds pooled)")
    ax.legend(fontsize=6)
    return _save(fig, path)
