"""One experiment's report: compute (statistics), then draw (figures), then write (pages).

``compute`` reads the runs and the experiment's YAML and returns a :class:`Report` with every
number a page shows; ``draw`` and ``render`` only present it; ``publish`` writes it back to
MLflow. Nothing here trains or launches anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd
from omegaconf import OmegaConf

from actloss_bench.config.paths import EXPERIMENTS_DIR, REAL_SUFFIX, experiment_names
from actloss_bench.report import figures, render, stats
from actloss_bench.report.load import (TUNED, ModelTable, add_history_stats, histories,
                                       load_models, predictions, views)
from actloss_bench.report.margins import MARGIN_FAMILIES, RATES, margin_family
from actloss_bench.report.verdict import RuleResult, claim_word, decide, evaluate_rule, matches

CHOICE_PARAMS = ("arm", "task", "activation", "head", "loss", "optimizer")


class UnknownExperiment(ValueError):
    pass


def load_experiment(name: str) -> Dict[str, Any]:
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UnknownExperiment(f"no experiment {name!r}; choose from: "
                                f"{', '.join(experiment_names())}")
    # The experiment over what it shares (its defaults list's _base), as Hydra composes it.
    raw = OmegaConf.merge(OmegaConf.load(EXPERIMENTS_DIR / "_base.yaml"), OmegaConf.load(path))
    claim = OmegaConf.to_container(raw.claim, resolve=False)
    return {"claim": claim, "verdict": claim.get("verdict", {}),
            "tracking_experiment": OmegaConf.select(raw, "tracking.experiment") or name,
            "tuned": bool(OmegaConf.select(raw, "tune.lr_factors")),
            "lr_factors": list(OmegaConf.select(raw, "tune.lr_factors") or [])}


@dataclass
class Outcome:
    """A view's verdict: every part evaluated, and the claim's word."""
    parts: List[RuleResult]
    word: str = ""
    why: str = ""

    @property
    def lead(self) -> Optional[RuleResult]:
        """The part whose effect the word rests on: the claim's first part, or for a word that
        no part reproduced, the first part with that word."""
        run = [p for p in self.parts if p.groups]
        same = [p for p in run if p.word == self.word]
        return (same or run or [None])[0] if self.word in ("contradicted", "not reproduced") \
            else (run or [None])[0]


def evaluate(models: pd.DataFrame, rules: List[Dict[str, Any]]) -> Outcome:
    out = Outcome([evaluate_rule(models, r) for r in rules])
    decide(out.parts)
    out.word, out.why = claim_word(out.parts)
    return out


@dataclass
class Report:
    name: str
    spec: Dict[str, Any]
    table: ModelTable
    outcomes: Dict[str, Outcome] = field(default_factory=dict)  # per view
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    cells: List[str] = field(default_factory=list)
    seeds: int = 0
    profile: str = "?"
    events: Optional[pd.DataFrame] = None
    tuning: Dict[str, int] = field(default_factory=dict)
    real: Optional[Dict[str, Any]] = None
    hist: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def short_claim(self) -> str:
        return re.split(r"[:.] ", self.spec["claim"].get("text", ""))[0].strip().rstrip(".")


def cell_columns(table: ModelTable, tuned: bool) -> List[str]:
    """The sweep's axes (the lr only where it is a condition, not tuned). A param that another
    swept choice fixes (a task's n_classes, an arm's head and loss) is implied by that choice
    and left out."""
    frame = table.models
    cells = [c for c in table.varying_params() if not (tuned and c == "optimizer.lr")]
    choices = [c for c in CHOICE_PARAMS if c in cells]

    def implied(c: str) -> bool:
        by = choices[:choices.index(c)] if c in choices else choices
        return any(frame.groupby(g)[c].nunique(dropna=False).max() == 1 for g in by)

    return [c for c in cells if not implied(c)]


def events_table(by_view: Dict[str, pd.DataFrame], metric: str, cells: List[str]) -> pd.DataFrame:
    """Per cell: how many evaluation models show the 0/1 ``metric`` (e.g. collapsed), in each
    view, as "k of n"; cells with no event in any view are left out."""
    counts = {view: models.groupby(cells)[metric].agg(["sum", "count"])
              for view, models in by_view.items()}
    table = pd.concat({f"{metric} ({view})": c["sum"].astype(int).astype(str) + " of "
                       + c["count"].astype(str) for view, c in counts.items()}, axis=1)
    hits = pd.concat([c["sum"] for c in counts.values()], axis=1).fillna(0).sum(axis=1) > 0
    return table[hits.reindex(table.index, fill_value=False)].reset_index()


def tuning_summary(table: ModelTable, lr_factors: List[float]) -> Dict[str, int]:
    """Cells whose choice lay at an edge of the initial grid (so the grid grew), and cells left
    at the grid's limit after growing."""
    models = table.models
    chosen = models[models["selected"].astype(bool)].groupby("cell_run_id")["lr"].first()
    default = models.groupby("cell_run_id")["default_lr"].first()
    low = default * min(lr_factors) * (1 + 1e-9)
    high = default * max(lr_factors) * (1 - 1e-9)
    at_edge = int(((chosen <= low.reindex(chosen.index))
                   | (chosen >= high.reindex(chosen.index))).sum())
    limit = sum(r.data.tags.get("lr_at_grid_limit") == "true" for r in table.cells)
    return {"cells": len(chosen), "initial_edge": at_edge, "at_limit": int(limit)}


def compute(name: str, uri: str) -> Report:
    spec = load_experiment(name)
    verdict_cfg = spec["verdict"]
    table = load_models(uri, spec["tracking_experiment"])
    report = Report(name, spec, table)
    if table.models.empty:
        return report
    rules = verdict_cfg.get("rules", [])
    history_stats = sorted({r["metric"] for r in rules if ":" in r["metric"]})
    if history_stats or verdict_cfg.get("curve"):
        report.hist = histories(table)
    add_history_stats(table, report.hist, history_stats)
    by_view = views(table, spec["tuned"])
    report.outcomes = {view: evaluate(models, rules) for view, models in by_view.items()}
    report.cells = cell_columns(table, spec["tuned"])
    selected = by_view[TUNED]
    metrics = [r["metric"] for r in rules if r["metric"] not in render.SUMMARY_METRICS]
    report.summary = summary_table(selected, report.cells, render.SUMMARY_METRICS + metrics)
    report.seeds = int(selected.groupby("cell_run_id")["seed"].nunique().min())
    if "profile" in selected:
        report.profile = ",".join(sorted(selected["profile"].astype(str).unique()))
    events = verdict_cfg.get("events") or next((r["metric"] for r in rules
                                                if r["metric"] in RATES), None)
    if events and report.cells:
        report.events = events_table(by_view, events, report.cells)
    if spec["tuned"]:
        report.tuning = tuning_summary(table, spec["lr_factors"])
    report.real = real_data_check(name, spec, uri)
    return report


def summary_table(runs: pd.DataFrame, cells: List[str], metrics: List[str]) -> pd.DataFrame:
    """Mean and 95% interval over seeds per cell, with model counts."""
    rows = []
    for key, part in (runs.groupby(cells, sort=True) if cells else [((), runs)]):
        key = key if isinstance(key, tuple) else (key,)
        row: Dict[str, Any] = dict(zip(cells, key))
        row["models"] = len(part)
        for m in metrics:
            if m in part:
                values = part[m].astype(float)
                values = values[values.notna() & (values.abs() != float("inf"))].to_numpy()
                row[m] = float(values.mean()) if len(values) else float("nan")
                row[f"{m} low"], row[f"{m} high"] = stats.mean_interval(values,
                                                                        n_resamples=999)
        rows.append(row)
    return pd.DataFrame(rows)


def real_data_check(name: str, spec: Dict[str, Any], uri: str) -> Optional[Dict[str, Any]]:
    """Every part on the experiment's real-data sweep (``claim.real_data``, run by
    ``run_all --real`` into MLflow experiment ``<name>_real``), by the same rules; None when the
    experiment has no re-check."""
    overrides = spec["claim"].get("real_data") or []
    if not overrides:
        return None
    experiment = f"{name}{REAL_SUFFIX}"
    out: Dict[str, Any] = {"experiment": experiment, "overrides": overrides, "outcome": None}
    table = load_models(uri, experiment)
    if table.models.empty:
        return out
    rules = spec["verdict"].get("rules", [])
    stats_needed = sorted({r["metric"] for r in rules if ":" in r["metric"]})
    if stats_needed:
        add_history_stats(table, histories(table), stats_needed)
    out["outcome"] = evaluate(views(table, spec["tuned"])[TUNED], rules)
    return out


def draw(report: Report, page_dir: Path) -> List[str]:
    """The page's figures, the headline first."""
    verdict_cfg = report.spec["verdict"]
    rules = verdict_cfg.get("rules", [])
    selected = views(report.table, report.spec["tuned"])[TUNED]
    made = []
    curve = verdict_cfg.get("curve")
    if curve and not report.hist.empty:
        chosen = report.hist.merge(selected[["cell_run_id", "seed", "lr"]],
                                   on=["cell_run_id", "seed", "lr"])
        facets = [c for c in (rules[0].get("condition") or []) if c in report.cells]
        lines = [c for c in report.cells if c not in facets]
        made.append(figures.curves_plot(
            stats_curves(chosen, curve, facets, lines), curve, page_dir / "curves.png"))
    panels = []
    for r in verdict_cfg.get("rankings", []):
        runs = selected[matches(selected, r.get("where"))]
        if not runs.empty:
            means, tied = ranking_table(runs, r["rows"], r["cols"], r["metric"],
                                        r.get("higher_is_better", True))
            panels.append({"title": r["name"], "means": means, "tied": tied,
                           "metric": r["metric"], "cols": r["cols"]})
    if panels:
        made.insert(0 if not curve else len(made),
                    figures.ranking_plot(panels, page_dir / "ranking.png"))
    made.append(figures.effect_plot(report.outcomes[TUNED].parts, page_dir / "effect.png"))
    heat = verdict_cfg.get("heatmap")
    if heat:
        values = stats.transform(selected[heat["metric"]].astype(float), heat.get("transform"))
        grid = values.groupby([selected[heat["rows"]], selected[heat["cols"]]]).mean()
        made.append(figures.heatmap_plot(grid.unstack(heat["cols"]), heat["metric"],
                                         heat.get("transform"), page_dir / "heatmap.png"))
    if verdict_cfg.get("reliability"):
        preds = predictions(report.table)
        pooled = {}
        groups = selected.groupby(report.cells) if report.cells else [("all", selected)]
        for cell, rows in groups:
            frames = [preds[c] for c in rows["cell_run_id"].unique() if c in preds]
            if frames:
                label = ", ".join(map(str, cell)) if isinstance(cell, tuple) else str(cell)
                pooled[label] = pd.concat(frames)
        if pooled:
            made.append(figures.reliability_plot(pooled, page_dir / "reliability.png"))
    return made


def stats_curves(hist: pd.DataFrame, metric: str, facets: List[str],
                 lines: List[str]) -> Dict[tuple, Dict[tuple, pd.DataFrame]]:
    """Per facet and line: per epoch the mean over seeds and its standard error."""
    out: Dict[tuple, Dict[tuple, pd.DataFrame]] = {}
    for key, part in (hist.groupby(facets, sort=False) if facets else [((), hist)]):
        key = key if isinstance(key, tuple) else (key,)
        out[tuple(f"{c}={k}" for c, k in zip(facets, key))] = {
            (cell if isinstance(cell, tuple) else (cell,)):
                rows.groupby("epoch")[metric].agg(["mean", "sem"]).fillna(0.0)
            for cell, rows in (part.groupby(lines) if lines else [(("all",), part)])}
    return out


def ranking_table(runs: pd.DataFrame, rows: str, cols: str, metric: str, higher: bool):
    """Seed-mean ``metric`` per row choice and column, and which rows are tied with the best
    of their column: the interval of how much worse than the best they are (paired by seed)
    lies below the metric family's margin."""
    means = runs[metric].astype(float).groupby([runs[rows], runs[cols]]).mean().unstack(cols)
    margin = MARGIN_FAMILIES[margin_family(metric)][0]
    tied = pd.DataFrame(False, index=means.index, columns=means.columns)
    for col in means.columns:
        column = means[col].dropna()
        if column.empty:
            continue
        best = column.idxmax() if higher else column.idxmin()
        in_col = runs[runs[cols] == col]
        per_seed = in_col.groupby([rows, "seed"])[metric].mean().unstack(rows)
        for choice in column.index:
            d = (per_seed[best] - per_seed[choice]) if higher else \
                (per_seed[choice] - per_seed[best])
            d = d.dropna().to_numpy()
            tied.loc[choice, col] = choice == best or (
                len(d) > 1 and stats.mean_interval(d, n_resamples=999)[1] < margin)
    return means, tied
