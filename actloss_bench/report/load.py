"""Read an experiment's models from MLflow into pandas: one row per model of every cell.

Each population job logs a cell-level run (``role=cell``) whose ``population.csv`` holds every
model's final validation and test metrics. The report pools the cells of one definition only:
those of the experiment's most recent sweep, including the finished cells that sweep found and
reused (``reused_by_sweeps``). Cells of earlier sweeps are left out and listed, with whether
their definition (resolved config minus seeds and swept values) differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from actloss_bench.report import stats
from actloss_bench.tracking import store
from actloss_bench.engine.diagnoses import DIAGNOSES


@dataclass
class ModelTable:
    models: pd.DataFrame  # one row per model: cell params, seed, lr, status, metrics
    cells: List[object] = field(default_factory=list)  # the pooled cell runs
    uri: str = ""
    sweep_id: str = ""
    definition: str = ""
    sweep_run_id: str = ""  # the latest sweep's parent run
    experiment_id: str = ""
    counts: Dict[str, int] = field(default_factory=dict)  # pooled cells by status
    left_out: List[str] = field(default_factory=list)  # what was not pooled, and why
    params: List[str] = field(default_factory=list)  # the config params of the cells

    def varying_params(self) -> List[str]:
        """Params that take more than one value across the cells (the sweep's axes)."""
        frame = self.models
        return [p for p in self.params if p in frame and frame[p].nunique(dropna=False) > 1
                and p != "seed"]


TUNED, DEFAULT = "tuned", "default lr"


def views(table: "ModelTable", tuned: bool) -> Dict[str, pd.DataFrame]:
    """The evaluation models each view reads: at the learning rate chosen on the tuning seeds,
    and at the configured (default) lr."""
    m = table.models
    m = m[m["role"] == "eval"]
    out = {TUNED: m[m["selected"].astype(bool)]}
    if tuned:
        out[DEFAULT] = m[(m["lr"] - m["default_lr"]).abs() <= 1e-9 * m["default_lr"]]
    return out


def _all_runs(client, experiment_id: str, filter_string: str):
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string,
                                  max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def artifact_path(uri: str, run, name: str) -> Optional[Path]:
    """A run's artifact as a local file (downloaded when a tracking server holds it)."""
    parsed = urlparse(run.info.artifact_uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path)) / name
        return path if path.is_file() else None
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                        artifact_path=name, tracking_uri=uri))
    except Exception:  # not there: the cell crashed before writing it
        return None


def load_models(uri: str, experiment: str) -> ModelTable:
    client = store.mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return ModelTable(pd.DataFrame(), uri=uri)
    sweeps = sorted(_all_runs(client, exp.experiment_id, f"tags.{store.TAG_ROLE} = 'sweep'"),
                    key=lambda r: r.info.start_time)
    cells = list(_all_runs(client, exp.experiment_id, f"tags.{store.TAG_ROLE} = 'cell'"))
    if not sweeps:
        return ModelTable(pd.DataFrame(), uri=uri)
    latest = sweeps[-1].data.tags
    sweep_id, definition = latest[store.TAG_SWEEP], latest.get(store.TAG_DEFINITION, "")

    def in_sweep(run) -> bool:
        tags = run.data.tags
        return (tags.get(store.TAG_SWEEP) == sweep_id
                or sweep_id in tags.get(store.TAG_REUSED, "").split(","))

    pooled = [r for r in cells if in_sweep(r) and "superseded_by" not in r.data.tags]
    left_out = _left_out([r for r in cells if r not in pooled], definition)
    counts: Dict[str, int] = {}
    for r in pooled:
        status = r.data.tags.get(store.TAG_STATUS, "running")
        counts[status] = counts.get(status, 0) + 1
    frames, params = [], set()
    for run in pooled:
        if run.data.tags.get(store.TAG_STATUS) != "ok":
            continue
        path = artifact_path(uri, run, "population.csv")
        if path is None:
            continue
        frame = pd.read_csv(path)
        cell_params = {k: v for k, v in run.data.params.items()
                       if k not in ("seed", "seeds", "optimizer.lr")}
        params.update(cell_params, ["optimizer.lr"])
        frame = frame.assign(**cell_params, cell_run_id=run.info.run_id,
                             default_lr=float(run.data.params["optimizer.lr"]))
        frames.append(frame)
    models = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not models.empty:
        if "role" not in models:  # written before tuning seeds were kept apart
            models["role"] = "eval"
        models["optimizer.lr"] = models["lr"].map(lambda v: f"{v:g}")
        models["diverged"] = (models["status"] == "diverged").astype(float)
        diagnosis = models["diagnosis"].fillna("").str.split(",")
        for name in DIAGNOSES:
            models[name] = diagnosis.apply(lambda ds, n=name: float(n in ds))
        # A diverged model is a failure for every failure rate, collapse included.
        models["collapsed"] = np.maximum(models["collapsed"], models["diverged"])
        models["seed"] = models["seed"].astype(int)
    return ModelTable(models, pooled, uri, sweep_id, definition, sweeps[-1].info.run_id,
                      exp.experiment_id, counts, left_out, sorted(params))


def _left_out(runs, definition: str) -> List[str]:
    """One line per earlier sweep whose cells are not pooled, with the reason."""
    by_sweep: Dict[str, List[object]] = {}
    for r in runs:
        by_sweep.setdefault(r.data.tags.get(store.TAG_SWEEP, "?"), []).append(r)
    lines = []
    for sweep, rs in sorted(by_sweep.items()):
        other = rs[0].data.tags.get(store.TAG_DEFINITION) != definition
        why = ("another definition (changed config, profile or command-line overrides)"
               if other else "an earlier sweep of the same definition, not part of the latest")
        lines.append(f"{len(rs)} cell run(s) of sweep {sweep}: {why}")
    return lines


def histories(table: ModelTable) -> pd.DataFrame:
    """Every pooled model's per-epoch metrics (``histories.csv`` of each cell), with the cell's
    params."""
    frames = []
    for run in table.cells:
        path = artifact_path(table.uri, run, "histories.csv")
        if path is None:
            continue
        cell = table.models[table.models["cell_run_id"] == run.info.run_id]
        if cell.empty:
            continue
        frame = pd.read_csv(path)
        keep = {p: cell[p].iloc[0] for p in table.params if p in cell}
        frames.append(frame.assign(**keep, cell_run_id=run.info.run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def predictions(table: ModelTable) -> Dict[str, pd.DataFrame]:
    """The selected models' test predictions per cell run (``predictions.csv``)."""
    out = {}
    for run in table.cells:
        path = artifact_path(table.uri, run, "predictions.csv")
        if path is not None:
            out[run.info.run_id] = pd.read_csv(path)
    return out


def add_history_stats(table: ModelTable, hist: pd.DataFrame, names: List[str]) -> None:
    """Add columns like ``jitter:val/mae`` computed from each model's metric history."""
    for name in names:
        stat, metric = name.split(":", 1)
        if stat not in stats.HISTORY_STATS:
            raise ValueError(f"unknown history statistic {stat!r} in {name!r}; known: "
                             f"{', '.join(stats.HISTORY_STATS)}")
        values = (hist.sort_values("epoch").groupby(["cell_run_id", "seed", "lr"])[metric]
                  .apply(lambda v: stats.HISTORY_STATS[stat](v.to_numpy(dtype=float))))
        index = pd.MultiIndex.from_frame(table.models[["cell_run_id", "seed", "lr"]])
        table.models[name] = values.reindex(index).to_numpy()
