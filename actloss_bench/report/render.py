"""Write results/<name>/README.md, summary.csv, figures, and the index results/README.md."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping

import numpy as np
import pandas as pd

from actloss_bench.diagnoses import DIAGNOSES, thresholds_table
from actloss_bench.report.verdict import RuleResult, mean_ci

SUMMARY_METRICS = ["test/accuracy", "test/balanced_accuracy", "test/minority_recall",
                   "test/pr_auc", "test/ece", "test/nll", "test/mean_confidence", "test/rmse",
                   "test/r2", "train/loss", "dead/fraction", "saturation/fraction",
                   "grad_norm/ratio_first_last", "diverged", "collapsed"]


def summary_table(runs: pd.DataFrame, cells: List[str], metrics: List[str]) -> pd.DataFrame:
    """Mean and 95% CI half-width over seeds per cell, with run counts."""
    rows = []
    groups = runs.groupby(cells, sort=True) if cells else [((), runs)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: Dict[str, Any] = dict(zip(cells, key))
        row["n_runs"] = len(part)
        for m in metrics:
            if m in part:
                mean, lo, hi = mean_ci(part[m].astype(float))
                row[m] = mean
                row[f"{m} ci95"] = (hi - lo) / 2 if math.isfinite(hi - lo) else math.nan
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
    out = summary[cells + ["n_runs"]].copy()
    for m in metrics:
        if m in summary and summary[m].notna().any():
            out[m] = [f"{_fmt(v)} ± {_fmt(h)}" if math.isfinite(h) else _fmt(v)
                      for v, h in zip(summary[m], summary[f"{m} ci95"])]
    return out


RULE_COLUMNS = ["rule", "condition", "pairs", "a (mean)", "b (mean)", "effect", "95% CI",
                "margin", "outcome"]


def rule_table(results: List[RuleResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        for g in r.groups:
            rows.append([r.name, g.label, g.n, g.a_mean, g.b_mean, g.mean,
                         f"[{_fmt(g.ci_low)}, {_fmt(g.ci_high)}]", r.margin, g.outcome])
        if not r.groups:  # say so, rather than drop the rule from the evidence
            rows.append([r.name, "-", 0, math.nan, math.nan, math.nan, "-", r.margin,
                         r.explanation])
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def verdict_word(r: RuleResult) -> str:
    return f"{r.verdict} (contradicted)" if r.contradicted and r.verdict != "depends" else r.verdict


def experiment_page(name: str, claim: Mapping[str, Any], results: List[RuleResult],
                    summary: pd.DataFrame, cells: List[str], counts: Mapping[str, int],
                    figures: List[str], n_seeds: int, profile: str,
                    diagnoses: Mapping[str, int]) -> str:
    head = results[0]
    shown_metrics = []
    for r in results:
        m = r.metric.split(":")[-1] if ":" not in r.metric else r.metric
        if m not in shown_metrics:
            shown_metrics.append(m)
    for m in ("test/accuracy", "test/ece", "test/rmse", "dead/fraction", "diverged"):
        if m not in shown_metrics and m in summary and summary[m].notna().any() and \
                len(shown_metrics) < 6:
            shown_metrics.append(m)
    lines = [
        f"# {name}: {verdict_word(head)}", "",
        f"> {claim.get('text', '').strip()}", "",
        f"Source: {claim.get('source', '').strip()}", "",
        f"Run: `actloss-bench -m experiment={name}` (profile `{profile}`: "
        f"{sum(counts.values())} jobs, {n_seeds} seeds; "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ").", "",
        "## Verdict", "",
        f"**{verdict_word(head)}** — {head.name}: {head.explanation}.", "",
    ]
    for r in results[1:]:
        lines.append(f"- {r.name}: **{verdict_word(r)}** — {r.explanation}.")
    lines += ["", "How it is computed: per rule, the metric of cells *a* (the choice the claim "
              "warns against) and *b* (the recommended one) is paired by seed within each "
              "condition; *effect* is how much worse *a* is (for `equivalent` claims: a − b), "
              "with a 95% t-interval over seeds. A condition reproduces the claim when the "
              "effect is at least the margin and the interval excludes 0 (equivalence: the "
              "interval lies within ±margin).", "",
              "## Evidence", "", markdown_table(rule_table(results)), "",
              "## Results per cell (mean ± 95% CI over seeds)", "",
              markdown_table(_with_ci(summary, cells, shown_metrics)), "",
              "All columns: [summary.csv](summary.csv).", ""]
    if diagnoses:
        lines += ["Diagnoses over all runs (thresholds in `actloss_bench/diagnoses.py`): " +
                  ", ".join(f"{k} x{v}" for k, v in diagnoses.items()) + ".", ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def index_page(entries: List[Dict[str, str]]) -> str:
    lines = ["# actloss_bench results", "",
             "Generated by `actloss-report --all` from the runs in MLflow (`make run` regenerates "
             "everything at the quick profile). Each verdict is computed from the data by the "
             "rule in `experiments/<name>.yaml`; see each page for the evidence.", "",
             "| experiment | claim | verdict | why |", "|---|---|---|---|"]
    for e in entries:
        lines.append(f"| [{e['name']}]({e['name']}/README.md) | {_cell(e['claim'])} | "
                     f"**{e['verdict']}** | {_cell(e['why'])} |")
    t = thresholds_table()
    lines += ["", "Diagnosis thresholds: " + ", ".join(f"{k}={v}" for k, v in t.items()) + ".",
              f"Diagnoses: {', '.join(DIAGNOSES)}.", ""]
    return "\n".join(lines)
