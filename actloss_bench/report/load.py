"""Read an experiment's runs from MLflow into one pandas row per finished job.

Only the latest finished attempt of each job (``job_key``) counts; parent runs, skipped
(invalid) cells, failed and superseded attempts are counted but left out of the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import pandas as pd

from actloss_bench.diagnoses import DIAGNOSES

# Params that identify a run's data draw rather than a cell of the sweep.
SEED_COLUMNS = ("seed",)


@dataclass
class RunTable:
    runs: pd.DataFrame  # one row per finished job (status ok or diverged)
    counts: Dict[str, int] = field(default_factory=dict)  # all jobs by status
    uri: str = ""
    experiment_id: str = ""
    params: List[str] = field(default_factory=list)  # the config params logged by every run

    def varying_params(self, params: List[str]) -> List[str]:
        """Params that take more than one value across the runs (the sweep's axes)."""
        return [p for p in params if p in self.runs and self.runs[p].nunique(dropna=False) > 1]


def load_runs(uri: str, experiment: str) -> RunTable:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return RunTable(pd.DataFrame(), {}, uri, "")
    rows, params = [], set()
    for run in _all_runs(client, exp.experiment_id):
        tags = run.data.tags
        if "job_key" not in tags or "superseded_by" in tags:
            continue
        row = {"run_id": run.info.run_id, "start_time": run.info.start_time,
               "status": tags.get("status", "running"), "job_key": tags["job_key"],
               "diagnosis": tags.get("diagnosis", ""), "combo": tags.get("combo", ""),
               "diverged_at_step": tags.get("diverged_at_step"),
               "artifact_uri": run.info.artifact_uri}
        row.update(run.data.params)
        params.update(run.data.params)
        row.update(run.data.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return RunTable(frame, {}, uri, exp.experiment_id)
    frame = frame.sort_values("start_time").drop_duplicates("job_key", keep="last")
    counts = frame["status"].value_counts().to_dict()
    frame = frame[frame["status"].isin(["ok", "diverged"])].copy()
    frame["diverged"] = (frame["status"] == "diverged").astype(float)
    for name in DIAGNOSES:
        frame[name] = frame["diagnosis"].fillna("").str.split(",").apply(
            lambda ds, n=name: float(n in ds))
    if "seed" in frame:
        frame["seed"] = frame["seed"].astype(int)
    return RunTable(frame.reset_index(drop=True), counts, uri, exp.experiment_id, sorted(params))


def _all_runs(client, experiment_id: str):
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def histories(table: RunTable, metric: str) -> Dict[str, np.ndarray]:
    """Per-epoch values of ``metric`` for every run of the table, by run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=table.uri)
    out = {}
    for run_id in table.runs["run_id"]:
        points = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        out[run_id] = np.array([m.value for m in points], dtype=float)
    return out


def jitter(values: np.ndarray, tail: float = 1 / 3) -> float:
    """Mean absolute epoch-to-epoch change over the last ``tail`` of training, relative to the
    mean level there: how much a converged curve still moves."""
    n = max(3, int(round(len(values) * tail)))
    last = values[-n:]
    if len(last) < 2 or not np.all(np.isfinite(last)):
        return float("nan")
    return float(np.mean(np.abs(np.diff(last))) / (np.mean(np.abs(last)) + 1e-12))


def add_history_stats(table: RunTable, names: List[str]) -> None:
    """Add columns like ``jitter:val/mae`` computed from each run's metric history."""
    for name in names:
        stat, metric = name.split(":", 1)
        if stat != "jitter":
            raise ValueError(f"unknown history statistic {stat!r} in {name!r}; known: jitter")
        hist = histories(table, metric)
        table.runs[name] = table.runs["run_id"].map(lambda r: jitter(hist[r]))
