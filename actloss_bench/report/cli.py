"""``actloss-report [NAME ... | --all]``: verdict pages for experiments, and the index."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlparse

import pandas as pd
from omegaconf import OmegaConf

from actloss_bench.paths import EXPERIMENTS_DIR, RESULTS_DIR
from actloss_bench.report import figures, render
from actloss_bench.report.load import RunTable, add_history_stats, histories, load_runs
from actloss_bench.report.verdict import evaluate_rule
from actloss_bench.tracking import resolve_uri

DEFAULT_URI = "sqlite:///results/mlflow.db"


def experiment_names() -> List[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load_experiment(name: str) -> Dict[str, Any]:
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"actloss-report: error: no experiment {name!r}; choose from: "
                         f"{', '.join(experiment_names())}")
    raw = OmegaConf.load(path)
    return {"claim": OmegaConf.to_container(raw.claim, resolve=False),
            "tracking_experiment": OmegaConf.select(raw, "tracking.experiment") or name}


CHOICE_PARAMS = ("arm", "task", "activation", "head", "loss", "optimizer")


def cell_columns(table: RunTable) -> List[str]:
    """The sweep's axes minus the seed. A param that another swept choice fixes (a task's
    n_classes, an arm's head and loss) is implied by that choice and left out."""
    cells = [c for c in table.varying_params(table.params) if c != "seed"]
    choices = [c for c in CHOICE_PARAMS if c in cells]

    def implied(c: str) -> bool:
        # A choice can only be implied by one listed before it (arm fixes head and loss).
        by = choices[:choices.index(c)] if c in choices else choices
        return any(table.runs.groupby(g)[c].nunique(dropna=False).max() == 1 for g in by)

    return [c for c in cells if not implied(c)]


def _local_path(artifact_uri: str, name: str) -> Optional[Path]:
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)) / name
    return None


def _predictions(row, uri: str) -> Optional[pd.DataFrame]:
    path = _local_path(row.artifact_uri, "predictions.csv")
    if path is None:  # served by a tracking server
        import mlflow

        path = Path(mlflow.artifacts.download_artifacts(
            run_id=row.run_id, artifact_path="predictions.csv", tracking_uri=uri))
    return pd.read_csv(path) if path.is_file() else None


def report_experiment(name: str, uri: str, out_dir: Path) -> Dict[str, str]:
    spec = load_experiment(name)
    claim, verdict_cfg = spec["claim"], spec["claim"].get("verdict", {})
    table = load_runs(uri, spec["tracking_experiment"])
    page_dir = out_dir / name
    page_dir.mkdir(parents=True, exist_ok=True)
    short_claim = re.split(r"[:.] ", claim.get("text", ""))[0].strip().rstrip(".")
    if table.runs.empty:
        (page_dir / "README.md").write_text(
            f"# {name}: not run\n\n> {claim.get('text', '')}\n\nNo finished runs in "
            f"{uri}. Run `actloss-bench -m experiment={name}` first.\n")
        return {"name": name, "claim": short_claim, "verdict": "not run", "why": "no runs"}

    rules = verdict_cfg.get("rules", [])
    history_stats = sorted({r["metric"] for r in rules if ":" in r["metric"]})
    add_history_stats(table, history_stats)
    results = [evaluate_rule(table.runs, r) for r in rules]
    cells = cell_columns(table)
    metrics = [r.metric for r in results if r.metric not in render.SUMMARY_METRICS]
    summary = render.summary_table(table.runs, cells, render.SUMMARY_METRICS + metrics)
    summary.to_csv(page_dir / "summary.csv", index=False)

    made = [figures.effect_plot(results, page_dir / "effect.png")]
    curve = verdict_cfg.get("curve")
    if curve:
        hist = histories(table, curve)
        facets = list(rules[0].get("condition") or [])
        made.append(figures.curves_plot(table.runs, hist, curve, cells, facets,
                                        page_dir / "curves.png"))
    heat = verdict_cfg.get("heatmap")
    if heat:
        made.append(figures.heatmap_plot(table.runs, heat["rows"], heat["cols"], heat["metric"],
                                         heat.get("transform"), page_dir / "heatmap.png"))
    if verdict_cfg.get("reliability"):
        pooled = {}
        for cell, rows in table.runs.groupby(cells) if cells else [("all", table.runs)]:
            frames = [f for f in (_predictions(r, uri) for r in rows.itertuples()) if f is not None]
            if frames:
                label = ", ".join(map(str, cell)) if isinstance(cell, tuple) else str(cell)
                pooled[label] = pd.concat(frames)
        if pooled:
            made.append(figures.reliability_plot(pooled, page_dir / "reliability.png"))

    diag_counts = {d: int(table.runs[d].sum()) for d in
                   ("collapsed", "dead_units", "vanishing_gradients", "saturated", "diverged",
                    "overconfident", "underconfident") if table.runs[d].sum() > 0}
    profile = ",".join(sorted(table.runs["profile"].unique())) if "profile" in table.runs else "?"
    page = render.experiment_page(name, claim, results, summary, cells, table.counts, made,
                                  table.runs["seed"].nunique(), profile, diag_counts)
    (page_dir / "README.md").write_text(page)
    head = results[0]
    return {"name": name, "claim": short_claim, "verdict": render.verdict_word(head),
            "why": f"{head.name}: {head.explanation}"}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="actloss-report",
        description="Compute verdicts from MLflow runs and write results/<name>/README.md.")
    parser.add_argument("names", nargs="*", help="experiment names (experiments/<name>.yaml)")
    parser.add_argument("--all", action="store_true", help="every experiment")
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"tracking URI (default {DEFAULT_URI})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    args = parser.parse_args(argv)
    if not args.names and not args.all:
        parser.error("name at least one experiment, or --all")
    names = experiment_names() if args.all else args.names
    for n in names:
        if n not in experiment_names():
            parser.error(f"no experiment {n!r}; choose from: {', '.join(experiment_names())}")
    uri = resolve_uri(args.uri)
    entries = []
    for n in names:
        entry = report_experiment(n, uri, args.out)
        print(f"{n}: {entry['verdict']} — {entry['why']}")
        entries.append(entry)
    if args.all:
        (args.out / "README.md").write_text(render.index_page(entries))
        print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
