"""Pages from a computed report: results/<name>/README.md and the index results/README.md.
Presentation only: every number comes from report/build.py and report/verdict.py."""

from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
import pandas as pd

from actloss_bench.engine.diagnoses import DIAGNOSES, thresholds_table
from actloss_bench.report.load import DEFAULT, TUNED
from actloss_bench.report.margins import MARGIN_FAMILIES
from actloss_bench.report.verdict import (DECISION_RULE, NOT_RUN, WORDS, GroupResult, RuleResult,
                                          fmt, summarise)

SUMMARY_METRICS = ["test/accuracy", "test/balanced_accuracy", "test/minority_recall",
                   "test/pr_auc", "test/ece", "test/ece_calibrated", "test/temperature",
                   "test/nll", "test/mean_confidence", "test/rmse",
                   "test/r2", "train/loss", "test/dead/fraction", "test/saturation/fraction",
                   "grad_norm/ratio_first_last", "escape_epoch", "diverged", "collapsed"]


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(fmt(v)) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, sep, *body])


def interval(g: GroupResult) -> str:
    return f"{fmt(g.mean)} [{fmt(g.ci_low)}, {fmt(g.ci_high)}]"


def _with_ci(summary: pd.DataFrame, cells: List[str], metrics: List[str]) -> pd.DataFrame:
    out = summary[cells + ["models"]].copy()
    for m in metrics:
        if m in summary and summary[m].notna().any():
            out[m] = [f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) else fmt(v)
                      for v, lo, hi in zip(summary[m], summary[f"{m} low"],
                                           summary[f"{m} high"])]
    return out


EVIDENCE_COLUMNS = ["part", "condition", "seeds", "a (mean)", "b (mean)", "effect [95% CI]",
                    "P(a worse)", "test", "p (Holm)", "outcome"]


def evidence_table(parts: List[RuleResult]) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(parts, 1):
        for g in r.groups + r.controls + ([r.pooled] if r.pooled is not None else []):
            label = f"{g.label} ({g.note})" if g.note else g.label
            if g.control is not None:
                label += f" — control, expects the effect {g.control.get('expect', 'absent')}"
            outcome = f"{g.outcome}: {g.why}" if g.why else g.outcome
            if g.control_failed:
                outcome += " ⚠ control failed"
            rows.append([i, label, g.n, g.a_mean, g.b_mean, interval(g), fmt(g.p_worse),
                         g.test, g.p_holm, outcome])
        if not r.groups and not r.controls:
            rows.append([i, "-", 0, math.nan, math.nan, "-", "-", "-", math.nan,
                         r.explanation])
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)


def effect_sentence(r: RuleResult) -> str:
    """``a vs b: metric 0.61 vs 0.93, worse by 0.32 [0.29, 0.35] at task=binary (20 seeds)``."""
    g = r.rests_on
    if g is None:
        return f"{r.name}: {r.explanation}"
    where = (f", {g.label}" if "pooled" in g.condition else f" at {g.label}") \
        if g.condition else ""
    sides = f"{r.a_label} vs {r.b_label}" if r.a_label and not g.note else g.note
    effect = "differs by" if r.claim == "equivalent" else "worse by"
    unit = "models" if r.rate and "pooled" in g.condition else "seeds"  # pooled: every model
    return (f"{sides}{where}: {r.metric_label} {fmt(g.a_mean)} vs {fmt(g.b_mean)}, {effect} "
            f"{interval(g)} over {g.n} {unit}")


def parts_table(parts: List[RuleResult]) -> pd.DataFrame:
    rows = [[i, r.name, f"**{r.word}**", r.explanation,
             interval(r.rests_on) + (f" ({r.rests_on.label})" if r.rests_on.condition else "")
             if r.rests_on is not None else "-", f"{r.margin:g} ({r.margin_source})"]
            for i, r in enumerate(parts, 1)]
    return pd.DataFrame(rows, columns=["#", "part", "word", "why", "effect it rests on",
                                       "margin"])


def first_sentence(report) -> str:
    """One sentence: the word, how many parts held, and the effect it rests on."""
    outcome = report.outcomes[TUNED]
    run = [p for p in outcome.parts if p.word != NOT_RUN]
    held = sum(p.word in ("reproduced", "depends") for p in run)
    lead = outcome.lead
    failed = [str(i) for i, p in enumerate(outcome.parts, 1)
              if p.word not in ("reproduced", "depends", NOT_RUN)]
    text = (f"**{outcome.word}**: {held} of {len(run)} parts hold"
            + (f" (not part{'s' if len(failed) > 1 else ''} {', '.join(failed)})"
               if failed and held else "")
            + (f"; part {outcome.parts.index(lead) + 1}, {effect_sentence(lead)}"
               if lead is not None else "") + ".")
    default = report.outcomes.get(DEFAULT)
    if default is not None:
        text += (f" At the default learning rate the word would be **{default.word}**."
                 if default.word != outcome.word else
                 " The default learning rate gives the same word.")
    return text


def experiment_page(report, figures: List[str]) -> str:
    name, claim, table = report.name, report.spec["claim"], report.table
    outcome = report.outcomes[TUNED]
    warnings = [w for p in outcome.parts for w in p.warnings]
    lines = [f"# {name}: {outcome.word}", "", first_sentence(report), ""]
    if warnings:
        lines += ["**Validity warnings** (controls that did not behave as expected):", ""]
        lines += [f"- ⚠ {w}" for w in warnings] + [""]
    if report.events is not None and not report.events.empty:
        metric = report.events.columns[-1].split(" (")[0]
        lines += [f"Where `{metric}` happens (evaluation models per cell, at the tuned and "
                  "the default learning rate; cells without any are left out):", "",
                  markdown_table(report.events), ""]
    lines += ["## Parts", "", markdown_table(parts_table(outcome.parts)), ""]
    if figures:
        lines += [f"![{figures[0]}]({figures[0]})", ""]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(table.counts.items()))
    tuned = report.spec["tuned"]
    lines += [f"> {claim.get('text', '').strip()}", "",
              f"Source: {claim.get('source', '').strip()}", "",
              f"Run: `actloss-bench -m experiment={name}` (profile `{report.profile}`; sweep "
              f"`{table.sweep_id}`, definition `{table.definition}`; {len(table.cells)} cells: "
              f"{counts}; {report.seeds} evaluation seeds per cell, paired across arms; "
              + ("the learning rate of every cell chosen on separate tuning seeds)."
                 if tuned else "the learning rate is a condition of the claim, not tuned)."),
              ""]
    if report.tuning:
        t = report.tuning
        lines += [f"Learning rates: in {t['initial_edge']} of {t['cells']} cells the choice "
                  f"lay at an edge of the initial grid, which then grew on that side; "
                  f"{t['at_limit']} cells were left at the grid's limit (the best rate may lie "
                  "beyond it).", ""]
    for view, out in report.outcomes.items():
        lines += [f"## Evidence ({view})", "", f"Claim: **{out.word}** — {out.why}.", "",
                  markdown_table(evidence_table(out.parts)), ""]
    lines += ["## Decision rule", "", DECISION_RULE, "", margins_table(), ""]
    shown = list(dict.fromkeys(r.metric for r in outcome.parts))
    for m in ("test/accuracy", "test/ece", "test/rmse", "test/dead/fraction", "diverged"):
        if m not in shown and m in report.summary and report.summary[m].notna().any() \
                and len(shown) < 6:
            shown.append(m)
    lines += ["## Results per cell at the chosen learning rate (mean [95% CI] over seeds)", "",
              markdown_table(_with_ci(report.summary, report.cells, shown)), "",
              "All columns: [summary.csv](summary.csv).", ""]
    if table.left_out:
        lines += ["## Left out", "", "Runs in the store that this verdict does not pool:", ""]
        lines += [f"- {line}" for line in table.left_out] + [""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures[1:]] + [""]
    if report.real is not None:
        lines += real_data_section(report.real)
    return "\n".join(lines)


def margins_table() -> str:
    frame = pd.DataFrame([[family, f"{margin:g}"] for family, (margin, _) in
                          MARGIN_FAMILIES.items()], columns=["metric family", "margin"])
    return ("Margins (the smallest effect that counts as the claimed one; a part overrides its "
            "family's only where the claim states a number, and says so):\n\n"
            + markdown_table(frame))


def _dataset(overrides: List[str]) -> str:
    return ", ".join(o.split("=", 1)[1] for o in overrides if o.startswith("task="))


def real_data_section(real: Dict[str, Any]) -> List[str]:
    lines = ["## On real data", "",
             f"Every part re-checked with `{' '.join(real['overrides'])}` (`make real`; MLflow "
             f"experiment `{real['experiment']}`; the same protocol and rules)."]
    outcome = real["outcome"]
    if outcome is None:
        return lines + ["", "Not run yet: `make real`.", ""]
    lines += ["", f"**{outcome.word}** on {_dataset(real['overrides'])} ({outcome.why}).", "",
              markdown_table(parts_table(outcome.parts)), "",
              markdown_table(evidence_table(outcome.parts)), ""]
    return lines


def real_data_cell(real) -> str:
    if real is None:
        return ""
    if real["outcome"] is None:
        return f"not run ({_dataset(real['overrides'])}: `make real`)"
    return f"{real['outcome'].word} ({_dataset(real['overrides'])})"


def index_entry(report) -> Dict[str, str]:
    outcome = report.outcomes[TUNED]
    lead = outcome.lead
    g = lead.rests_on if lead is not None else None
    effect = ""
    if g is not None:
        effect = f"part {outcome.parts.index(lead) + 1}: {interval(g)}"
        effect += f" at {summarise([g.label], 1)}" if g.condition else ""
    warnings = sum(len(p.warnings) for p in outcome.parts)
    return {"name": report.name, "claim": report.short_claim, "word": outcome.word,
            "parts": "; ".join(f"{i}. {p.word}" for i, p in enumerate(outcome.parts, 1)),
            "effect": effect, "seeds": str(report.seeds),
            "real": real_data_cell(report.real), "warnings": str(warnings or "")}


def not_run_entry(report) -> Dict[str, str]:
    return {"name": report.name, "claim": report.short_claim, "word": "not run", "parts": "",
            "effect": "", "seeds": "0", "real": "", "warnings": ""}


def not_run_page(report, uri: str) -> str:
    return (f"# {report.name}: not run\n\n> {report.spec['claim'].get('text', '').strip()}\n\n"
            f"No finished cells in {uri}. Run `actloss-bench -m experiment={report.name}` "
            f"first.\n")


def index_page(entries: List[Dict[str, str]]) -> str:
    counts = {w: sum(e["word"] == w for e in entries) for w in WORDS}
    lines = ["# actloss_bench results", "",
             "Generated by `actloss-report --all` from the runs in MLflow (`make run` "
             "regenerates everything at the quick profile). A claim's word comes from its "
             "parts' words (each part one rule of `experiments/<name>.yaml`); the effect is the "
             "one the word rests on: how much worse the warned-against choice is, with its 95% "
             "interval and condition. Each page has every part, condition and control, and the "
             "default-learning-rate view.", "",
             f"{len(entries)} claims: " + ", ".join(f"{n} {w}" for w, n in counts.items() if n)
             + ".", "",
             "| claim | word | parts | effect [95% CI] | seeds | real data | warnings |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| [{e['name']}]({e['name']}/README.md): {_cell(e['claim'])} | "
                     f"**{e['word']}** | {_cell(e['parts'])} | {_cell(e['effect'])} | "
                     f"{e['seeds']} | {_cell(e.get('real', ''))} | {e.get('warnings', '')} |")
    t = thresholds_table()
    lines += ["", "## Decision rule", "", DECISION_RULE, "", margins_table(), "",
              "Diagnosis thresholds (read on the test split): "
              + ", ".join(f"{k}={v}" for k, v in t.items()) + ".",
              f"Diagnoses: {', '.join(DIAGNOSES)}.", ""]
    return "\n".join(lines)
