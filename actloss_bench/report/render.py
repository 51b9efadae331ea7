"""Write results/<name>/README.md, summary.csv, figures, and the index results/README.md."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping

import numpy as np
import pandas as pd

from actloss_bench.engine.diagnoses import DIAGNOSES, thresholds_table
from actloss_bench.report.verdict import DECISION_RULE, RuleResult, bootstrap_ci

SUMMARY_METRICS = ["test/accuracy", "test/balanced_accuracy", "test/minority_recall",
                   "test/pr_auc", "test/ece", "test/ece_calibrated", "test/temperature",
                   "test/nll", "test/mean_confidence", "test/rmse",
                   "test/r2", "train/loss", "dead/fraction", "saturation/fraction",
                   "grad_norm/ratio_first_last", "diverged", "collapsed"]


def summary_table(runs: pd.DataFrame, cells: List[str], metrics: List[str]) -> pd.DataFrame:
    """Mean and 95% bootstrap CI over seeds per cell, with model counts."""
    rows = []
    groups = runs.groupby(cells, sort=True) if cells else [((), runs)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: Dict[str, Any] = dict(zip(cells, key))
        row["models"] = len(part)
        for m in metrics:
            if m in part:
                values = part[m].astype(float)
                values = values[np.isfinite(values)].to_numpy()
                row[m] = float(values.mean()) if len(values) else math.nan
                row[f"{m} low"], row[f"{m} high"] = bootstrap_ci(values, np.mean)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "inf" if v == math.inf else ("-inf" if v == -math.inf else "n/a")
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(_fmt(v)) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, sep, *body])


def _with_ci(summary: pd.DataFrame, cells: List[str], metrics: List[str]) -> pd.DataFrame:
    out = summary[cells + ["models"]].copy()
    for m in metrics:
        if m in summary and summary[m].notna().any():
            out[m] = [f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) else _fmt(v)
                      for v, lo, hi in zip(summary[m], summary[f"{m} low"],
                                           summary[f"{m} high"])]
    return out


RULE_COLUMNS = ["rule", "condition", "seeds", "a (mean)", "b (mean)", "effect", "95% CI",
                "P(a worse)", "p (Holm)", "margin", "outcome"]


def rule_table(results: List[RuleResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        for g in r.groups:
            label = f"{g.label} ({g.note})" if g.note else g.label
            rows.append([r.name, label, g.n, g.a_mean, g.b_mean, g.mean,
                         f"[{_fmt(g.ci_low)}, {_fmt(g.ci_high)}]",
                         f"{_fmt(g.p_worse, 2)} [{_fmt(g.p_worse_low, 2)}, "
                         f"{_fmt(g.p_worse_high, 2)}]", g.p_holm, r.margin, g.outcome])
        if not r.groups:  # say so, rather than drop the rule from the evidence
            rows.append([r.name, "-", 0, math.nan, math.nan, math.nan, "-", "-", math.nan,
                         r.margin, r.explanation])
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def headline(r: RuleResult) -> str:
    """One plain sentence: the effect where the claim holds best (or at its first condition),
    with its interval, P(worse) and seeds, and where it holds."""
    if not r.groups:
        return f"{r.name}: no paired runs."
    g = max(r.held or r.groups, key=lambda g: g.mean if math.isfinite(g.mean) else -math.inf)
    cond = f" at {g.label}" if g.condition else ""
    effect = "differs by" if r.claim == "equivalent" else "worse by"
    sides = f"{r.a_label} vs {r.b_label}" if r.a_label else g.note  # combined rules: per group
    text = (f"{sides}{cond}: {r.metric_label} {_fmt(g.a_mean)} vs "
            f"{_fmt(g.b_mean)}, {effect} {_fmt(g.mean)} [{_fmt(g.ci_low)}, {_fmt(g.ci_high)}], "
            f"P(worse) {_fmt(g.p_worse, 2)} over {g.n} seeds")
    if len(r.groups) > 1:
        text += f"; {r.explanation}"
    return text + "."


def experiment_page(name: str, claim: Mapping[str, Any], results: Dict[str, List[RuleResult]],
                    lead: Dict[str, RuleResult], summary: pd.DataFrame, cells: List[str], table,
                    figures: List[str], n_seeds: int, profile: str, tuned: bool) -> str:
    """``lead``: per view, the rule whose verdict is the claim's (the first rule, or every
    rule's conditions combined)."""
    views = list(results)
    main = results[views[0]]
    head = lead[views[0]]
    shown_metrics = []
    for r in main:
        if r.metric not in shown_metrics:
            shown_metrics.append(r.metric)
    for m in ("test/accuracy", "test/ece", "test/rmse", "dead/fraction", "diverged"):
        if m not in shown_metrics and m in summary and summary[m].notna().any() and \
                len(shown_metrics) < 6:
            shown_metrics.append(m)
    sentence = f"**{head.verdict}**: {headline(head)}"
    if tuned and len(views) > 1:
        untuned = lead[views[1]]
        if untuned.verdict != head.verdict:
            sentence += (f" At the default learning rate the verdict would be "
                         f"**{untuned.verdict}**: the folklore's setting decides it.")
        else:
            sentence += " The default learning rate gives the same verdict."
    counts = ", ".join(f"{v} {k}" for k, v in sorted(table.counts.items()))
    lines = [f"# {name}: {head.verdict}", "", sentence, ""]
    if figures:
        lines += [f"![{figures[0]}]({figures[0]})", ""]
    lines += [f"> {claim.get('text', '').strip()}", "",
              f"Source: {claim.get('source', '').strip()}", "",
              f"Run: `actloss-bench -m experiment={name}` (profile `{profile}`; sweep "
              f"`{table.sweep_id}`, definition `{table.definition}`; {len(table.cells)} cells: "
              f"{counts}; {n_seeds} seeds per cell, paired across arms; "
              + ("learning rate tuned per arm and condition on the validation split)."
                 if tuned else "the learning rate is a condition of the claim, not tuned)."),
              ""]
    lines += ["## Verdict", ""]
    for view in views:
        for r in results[view]:
            lines.append(f"- {view}: {r.name}: **{r.verdict}** — {r.explanation}.")
    lines += ["", f"Decision rule: {DECISION_RULE}", ""]
    for view in views:
        lines += [f"## Evidence ({view})", "", markdown_table(rule_table(results[view])), ""]
    lines += ["## Results per cell at the selected learning rate (mean [95% CI] over seeds)", "",
              markdown_table(_with_ci(summary, cells, shown_metrics)), "",
              "All columns: [summary.csv](summary.csv).", ""]
    if table.left_out:
        lines += ["## Left out", "", "Runs in the store that this verdict does not pool:", ""]
        lines += [f"- {line}" for line in table.left_out] + [""]
    if tuned:
        edge = grid_edges(table.models)
        lines += [f"Selected learning rates: {edge} (at an edge, the best lr may lie beyond the "
                  "grid).", ""]
    short = table.models.groupby("cell_run_id")["seed"].nunique()
    if short.nunique() > 1:
        lines += [f"Cells with fewer seeds than others: {int((short < short.max()).sum())}.", ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures[1:]] + [""]
    return "\n".join(lines)


def grid_edges(models: pd.DataFrame) -> str:
    """How many cells selected the lowest or the highest learning rate of their grid."""
    low = high = 0
    cells = models.groupby("cell_run_id")
    for _, cell in cells:
        chosen = cell.loc[cell["selected"].astype(bool), "lr"]
        if chosen.empty:
            continue
        low += chosen.iloc[0] == cell["lr"].min()
        high += chosen.iloc[0] == cell["lr"].max()
    return (f"{len(cells) - low - high} of {len(cells)} cells inside the grid, {low} at its "
            f"lowest point, {high} at its highest")


def index_entry(name: str, claim: str, rule: RuleResult, seeds: int) -> Dict[str, str]:
    g = (max(rule.held or rule.groups, key=lambda g: g.mean if math.isfinite(g.mean)
             else -math.inf) if rule.groups else None)
    effect = (f"{_fmt(g.mean)} [{_fmt(g.ci_low)}, {_fmt(g.ci_high)}]" if g is not None else "")
    where = ("; ".join(x.label for x in rule.held) if rule.held and len(rule.groups) > 1
             else ("everywhere tested" if rule.held else "nowhere tested"))
    return {"name": name, "claim": claim, "verdict": rule.verdict, "effect": effect,
            "where": where, "seeds": str(seeds), "rule": rule.name}


def _dataset(overrides: List[str]) -> str:
    return ", ".join(o.split("=", 1)[1] for o in overrides if o.startswith("task="))


def real_data_cell(overrides: List[str], result) -> str:
    """The index's real-data column: the primary rule's verdict on the real dataset."""
    if result is None:
        return f"not run ({_dataset(overrides)}: `make real`)"
    return f"{result.verdict} ({_dataset(overrides)})"


def real_data_section(experiment: str, overrides: List[str], result) -> str:
    lines = ["", "## On real data", "",
             f"The primary rule re-checked with `{' '.join(overrides)}` (`make real`; MLflow "
             f"experiment `{experiment}`; the same protocol and seeds, each arm's learning rate "
             f"tuned on validation)."]
    if result is None:
        return "\n".join(lines + ["", "Not run yet: `make real`.", ""])
    lines += ["", f"**{result.verdict}** on {_dataset(overrides)}: {headline(result)}", "",
              markdown_table(rule_table([result])), ""]
    return "\n".join(lines)


def index_page(entries: List[Dict[str, str]]) -> str:
    lines = ["# actloss_bench results", "",
             "Generated by `actloss-report --all` from the runs in MLflow (`make run` regenerates "
             "everything at the quick profile). Each verdict is computed from the data by the "
             "primary rule in `experiments/<name>.yaml` (the effect is how much worse the "
             "warned-against choice is, with its 95% interval, where the claim holds best); "
             "see each page for every rule and the default-learning-rate view.", "",
             "| claim | verdict | effect [95% CI] | where it holds | seeds | real data |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| [{e['name']}]({e['name']}/README.md): {_cell(e['claim'])} | "
                     f"**{e['verdict']}** | {_cell(e['effect'])} | {_cell(e['where'])} | "
                     f"{e['seeds']} | {_cell(e.get('real', ''))} |")
    t = thresholds_table()
    lines += ["", f"Decision rule: {DECISION_RULE}", "",
              "Diagnosis thresholds: " + ", ".join(f"{k}={v}" for k, v in t.items()) + ".",
              f"Diagnoses: {', '.join(DIAGNOSES)}.", ""]
    return "\n".join(lines)
