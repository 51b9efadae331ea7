"""``actloss-report [NAME ... | --all]``: verdict pages for experiments, and the index."""

from __future__ import annotations

import argparse
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd
from omegaconf import OmegaConf

from actloss_bench.config.paths import EXPERIMENTS_DIR, RESULTS_DIR, experiment_names
from actloss_bench.cli.run_all import REAL_SUFFIX
from actloss_bench.report import figures, render
from actloss_bench.report.load import ModelTable, add_history_stats, histories, load_models
from actloss_bench.report.load import predictions as load_predictions
from actloss_bench.report.verdict import combined, decide, evaluate_rule, matches
from actloss_bench.tracking.store import resolve_uri
from actloss_bench.ops.ui import key_metrics, write_runs_view

DEFAULT_URI = "sqlite:///results/mlflow.db"
# The two views of every page: test metrics at the lr selected on validation, and at the
# configured (default) lr.
TUNED, DEFAULT = "tuned", "default lr"


def load_experiment(name: str) -> Dict[str, Any]:
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"actloss-report: error: no experiment {name!r}; choose from: "
                         f"{', '.join(experiment_names())}")
    raw = OmegaConf.load(path)
    return {"claim": OmegaConf.to_container(raw.claim, resolve=False),
            "tracking_experiment": OmegaConf.select(raw, "tracking.experiment") or name,
            "tuned": bool(OmegaConf.select(raw, "tune.lr_factors"))}


CHOICE_PARAMS = ("arm", "task", "activation", "head", "loss", "optimizer")


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


def views(table: ModelTable, tuned: bool) -> Dict[str, pd.DataFrame]:
    """The models each view reads: at the validation-selected lr, and at the default lr."""
    m = table.models
    out = {TUNED: m[m["selected"].astype(bool)]}
    if tuned:
        out[DEFAULT] = m[(m["lr"] - m["default_lr"]).abs() <= 1e-12 * m["default_lr"]]
    return out


def report_experiment(name: str, uri: str, out_dir: Path) -> Dict[str, str]:
    spec = load_experiment(name)
    claim, verdict_cfg = spec["claim"], spec["claim"].get("verdict", {})
    table = load_models(uri, spec["tracking_experiment"])
    page_dir = out_dir / name
    page_dir.mkdir(parents=True, exist_ok=True)
    short_claim = re.split(r"[:.] ", claim.get("text", ""))[0].strip().rstrip(".")
    if table.models.empty:
        (page_dir / "README.md").write_text(
            f"# {name}: not run\n\n> {claim.get('text', '').strip()}\n\nNo finished cells in "
            f"{uri}. Run `actloss-bench -m experiment={name}` first.\n")
        return {"name": name, "claim": short_claim, "verdict": "not run", "effect": "",
                "where": "", "seeds": "0"}

    rules = verdict_cfg.get("rules", [])
    curve = verdict_cfg.get("curve")
    history_stats = sorted({r["metric"] for r in rules if ":" in r["metric"]})
    hist = histories(table) if (history_stats or curve) else pd.DataFrame()
    add_history_stats(table, hist, history_stats)
    view_models = views(table, spec["tuned"])
    results = {}
    for view, models in view_models.items():
        results[view] = [evaluate_rule(models, r) for r in rules]
        decide(results[view])
    tuned = results[TUNED]
    cells = cell_columns(table, spec["tuned"])
    selected = view_models[TUNED]
    metrics = [r.metric for r in tuned if r.metric not in render.SUMMARY_METRICS]
    summary = render.summary_table(selected, cells, render.SUMMARY_METRICS + metrics)
    summary.to_csv(page_dir / "summary.csv", index=False)

    made = []
    if curve and not hist.empty:
        chosen = hist.merge(selected[["cell_run_id", "seed", "lr"]],
                            on=["cell_run_id", "seed", "lr"])
        facets = list(rules[0].get("condition") or [])
        made.append(figures.curves_plot(chosen, curve, cells, facets, page_dir / "curves.png"))
    made.append(figures.effect_plot(tuned, page_dir / "effect.png"))
    heat = verdict_cfg.get("heatmap")
    if heat:
        made.append(figures.heatmap_plot(selected, heat["rows"], heat["cols"], heat["metric"],
                                         heat.get("transform"), page_dir / "heatmap.png"))
    panels = [{"title": r["name"], "runs": selected[matches(selected, r.get("where"))],
               "rows": r["rows"], "cols": r["cols"], "metric": r["metric"],
               "higher_is_better": r.get("higher_is_better", True)}
              for r in verdict_cfg.get("rankings", [])]
    panels = [p for p in panels if not p["runs"].empty]
    if panels:  # the headline figure when there is no curve to show
        made.insert(0 if not curve else len(made),
                    figures.ranking_plot(panels, page_dir / "ranking.png"))
    if verdict_cfg.get("reliability"):
        preds = load_predictions(table)
        pooled = {}
        for cell, rows in selected.groupby(cells) if cells else [("all", selected)]:
            frames = [preds[c] for c in rows["cell_run_id"].unique() if c in preds]
            if frames:
                label = ", ".join(map(str, cell)) if isinstance(cell, tuple) else str(cell)
                pooled[label] = pd.concat(frames)
        if pooled:
            made.append(figures.reliability_plot(pooled, page_dir / "reliability.png"))

    seeds = int(selected.groupby("cell_run_id")["seed"].nunique().min())
    profile = ",".join(sorted(selected["profile"].astype(str).unique())) \
        if "profile" in selected else "?"
    real = real_data_check(name, spec, uri, rules[0])
    # The claim's verdict: its first rule's, or with `primary: all` every rule's conditions.
    lead = {view: combined(rs, "every rule") if verdict_cfg.get("primary") == "all" else rs[0]
            for view, rs in results.items()}
    page = render.experiment_page(name, claim, results, lead, summary, cells, table, made, seeds,
                                  profile, spec["tuned"])
    if real is not None:
        page += render.real_data_section(*real)
    (page_dir / "README.md").write_text(page)
    entry = render.index_entry(name, short_claim, lead[TUNED], seeds)
    entry["real"] = render.real_data_cell(*real[1:]) if real is not None else ""
    publish(table, claim, entry, page_dir)
    return entry


def real_data_check(name: str, spec: Dict[str, Any], uri: str, rule: Dict[str, Any]):
    """The primary rule on the experiment's real-data sweep (``claim.real_data``, run by
    ``run_all --real`` into MLflow experiment ``<name>_real``): (that experiment, overrides,
    result or None if not run); None when the experiment has no real-data re-check."""
    overrides = spec["claim"].get("real_data") or []
    if not overrides:
        return None
    experiment = f"{name}{REAL_SUFFIX}"
    table = load_models(uri, experiment)
    if table.models.empty:
        return experiment, overrides, None
    if ":" in rule["metric"]:  # a statistic of the per-epoch history (e.g. jitter:val/mae)
        add_history_stats(table, histories(table), [rule["metric"]])
    models = views(table, spec["tuned"])[TUNED]
    result = evaluate_rule(models, rule)
    decide([result])
    return experiment, overrides, result


def publish(table: ModelTable, claim: Dict[str, Any], entry: Dict[str, str],
            page_dir: Path) -> None:
    """Put the verdict where MLflow's reviewers look: the experiment's description (claim and
    verdict) and the page with its figures as artifacts of the sweep's parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=table.uri)
    client.set_experiment_tag(table.experiment_id, "mlflow.note.content",
                              f"{claim.get('text', '').strip()}\n\n**Verdict: {entry['verdict']}"
                              f"** ({entry['rule']}: effect {entry['effect']}; holds: "
                              f"{entry['where']}; {entry['seeds']} seeds per cell)")
    client.log_artifacts(table.sweep_run_id, str(page_dir), "report")
    # The runs table's columns: the sweep's axes and the claim's metrics, then the usual ones.
    kinds = [kind for kind, metric in (("regression", "test/rmse"),
                                       ("multilabel", "test/subset_accuracy"),
                                       ("classification", "test/accuracy"))
             if metric in table.models]
    write_runs_view(client, table.experiment_id, table.varying_params(),
                    key_metrics(kinds, [r["metric"] for r in claim.get("verdict", {})
                                        .get("rules", [])]))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="actloss-report",
        description="Compute verdicts from MLflow runs and write results/<name>/README.md.")
    parser.add_argument("names", nargs="*", help="experiment names (experiments/<name>.yaml)")
    parser.add_argument("--all", action="store_true", help="every experiment")
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"tracking URI (default {DEFAULT_URI})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="experiments reported at once (default: one per core)")
    args = parser.parse_args(argv)
    if not args.names and not args.all:
        parser.error("name at least one experiment, or --all")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} is not allowed; it must be an integer >= 1")
    names = experiment_names() if args.all else args.names
    for n in names:
        if n not in experiment_names():
            parser.error(f"no experiment {n!r}; choose from: {', '.join(experiment_names())}")
    uri = resolve_uri(args.uri)
    entries = []
    # Experiments are independent: one process per core (the bootstrap, the permutation tests
    # and the figures are CPU-bound), results printed in order.
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(names))) as pool:
        for n, entry in zip(names, pool.map(report_experiment, names, repeat(uri),
                                            repeat(args.out))):
            print(f"{n}: {entry['verdict']} — {entry['effect']} {entry['where']}".rstrip())
            entries.append(entry)
    if args.all:
        (args.out / "README.md").write_text(render.index_page(entries))
        print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
