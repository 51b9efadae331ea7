"""Report figures: effect sizes, learning curves, heatmaps, reliability diagrams (drawing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actloss_bench.engine.metrics import reliability_bins  # noqa: E402
from actloss_bench.report.verdict import HOLDS, OPPOSITE, RuleResult  # noqa: E402

OUTCOME_COLOURS = {HOLDS: "tab:red", OPPOSITE: "tab:blue"}


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


def effect_plot(results: List[RuleResult], path: Path) -> str:
    """One panel per rule: the paired effect per condition with its 95% CI and the margin."""
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 1.2 + 1.3 * len(results) +
                                                       0.25 * max(len(r.groups) for r in results)),
                             squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        ys = np.arange(len(r.groups))
        for y, g in zip(ys, r.groups):
            lo = g.ci_low if np.isfinite(g.ci_low) else g.mean
            hi = g.ci_high if np.isfinite(g.ci_high) else g.mean
            colour = OUTCOME_COLOURS.get(g.outcome, "grey")
            # max(0, ...): an interval's end may sit a rounding error inside the mean.
            ax.errorbar(g.mean, y, xerr=[[max(0.0, g.mean - lo)], [max(0.0, hi - g.mean)]],
                        fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        if r.claim == "worse":
            ax.axvspan(r.margin, ax.get_xlim()[1] if r.groups else r.margin * 2, color="tab:red",
                       alpha=0.08)
        else:
            ax.axvspan(-r.margin, r.margin, color="tab:green", alpha=0.1)
        ax.set_yticks(ys, [g.label for g in r.groups], fontsize=7)
        effect = "a worse than b by" if r.claim == "worse" else "a - b"
        ax.set_title(f"{r.name}\n{effect} ({r.metric}); verdict: {r.verdict}", fontsize=8)
    return _save(fig, path)


def curves_plot(hist: pd.DataFrame, metric: str, cell_cols: List[str], facet_cols: List[str],
                path: Path) -> str:
    """A per-epoch metric at the selected learning rate: the mean over seeds with a band of
    +-1 standard error, one line per cell, one panel per facet value."""
    facet_cols = [c for c in facet_cols if c in cell_cols]
    facets = (hist.groupby(facet_cols, sort=False) if facet_cols else [((), hist)])
    facets = sorted(facets, key=lambda kv: _natural(kv[0]))[:9]
    ncols = min(3, len(facets))
    nrows = int(np.ceil(len(facets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    line_cols = [c for c in cell_cols if c not in facet_cols]
    for ax, (key, part) in zip(axes.flat, facets):
        for cell, rows in (part.groupby(line_cols) if line_cols else [((), part)]):
            by_epoch = rows.groupby("epoch")[metric]
            mean, sem = by_epoch.mean(), by_epoch.sem().fillna(0)
            cell = cell if isinstance(cell, tuple) else (cell,)
            label = ", ".join(str(c) for c in cell) or "all"
            line, = ax.plot(mean.index, mean.to_numpy(), label=label)
            ax.fill_between(mean.index, (mean - sem).to_numpy(), (mean + sem).to_numpy(),
                            color=line.get_color(), alpha=0.2, lw=0)
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(", ".join(f"{c}={k}" for c, k in zip(facet_cols, key)) or metric, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"{metric} (mean ± s.e. over seeds)", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(facets):]:
        ax.set_visible(False)
    return _save(fig, path)


def heatmap_plot(runs: pd.DataFrame, rows: str, cols: str, metric: str,
                 transform: Optional[str], path: Path) -> str:
    values = runs[metric].astype(float)
    if transform == "log10":
        values = np.log10(values.where(values > 0))
    table = values.groupby([runs[rows], runs[cols]]).mean().unstack(cols)
    try:  # numeric axes in numeric order
        table = table.sort_index(key=lambda i: i.astype(float))
        table = table[sorted(table.columns, key=float)]
    except (TypeError, ValueError):
        pass
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * table.shape[1], 1.0 + 0.6 * table.shape[0]))
    im = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{transform + ' ' if transform else ''}{metric}")
    return _save(fig, path)


def ranking_plot(panels: List[Dict], path: Path) -> str:
    """One heatmap per panel (``title``, ``runs``, ``rows``, ``cols``, ``metric``,
    ``higher_is_better``): each row's rank within its column by the seed-mean metric (1 = best;
    colour), the mean written in the cell, rows ordered by their mean rank."""
    heights = [runs[p["rows"]].nunique() for p in panels for runs in [p["runs"]]]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(6.5, 0.9 * len(panels) + 0.32 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, p in zip(axes[:, 0], panels):
        runs, metric = p["runs"], p["metric"]
        means = runs[metric].astype(float).groupby([runs[p["rows"]], runs[p["cols"]]]).mean()
        means = means.unstack(p["cols"])
        ranks = means.rank(ascending=not p["higher_is_better"], method="min")
        order = ranks.mean(1).sort_values().index
        means, ranks = means.loc[order], ranks.loc[order]
        worst = max(2, len(means))
        ax.imshow(ranks.to_numpy(), cmap="viridis_r", aspect="auto", vmin=1, vmax=worst)
        ax.set_xticks(range(means.shape[1]), means.columns)
        ax.set_yticks(range(means.shape[0]), means.index, fontsize=7)
        ax.set_title(f"{p['title']}: rank by {metric} (1 = best, yellow)", fontsize=8)
        for (i, j), v in np.ndenumerate(means.to_numpy()):
            dark = ranks.to_numpy()[i, j] > (1 + worst) / 2
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="w" if dark else "k")
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
