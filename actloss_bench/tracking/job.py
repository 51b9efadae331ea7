"""A job's MLflow layout: where it logs, its resume rule, and the runs it writes.

- One model (no grid, one seed): one run, started before training so the UI shows it live,
  with per-epoch metrics every ``tracking.log_every`` epochs (auto: about 25 points) and the
  final ``test/*`` metrics, tags and artifacts.
- A population: one *cell* run (``role=cell``: ``population.csv`` with every model, tuning and
  evaluation, ``histories.csv`` with every epoch of every model, ``predictions.csv``, and the
  seed-mean curves with their band), and under it one run per evaluation seed at the chosen
  learning rate, with the params and ``job_key`` of that seed's one-model run.

Resume rule (one, for both): a job whose run (or cell run) finished before is not run again; an
earlier unfinished attempt is marked ``superseded_by`` the new one.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from actloss_bench.tracking import store
from actloss_bench.tracking.artifacts import write_csv, write_overview, write_text
from actloss_bench.tracking.sweep import progress_line, read_sweep_info

# What a seed run carries besides its test metrics (each value costs ~0.5 ms in MLflow's SQL
# store; thousands of runs per `make run`): the headline diagnostics. Every metric of every
# model, per epoch too, is in its cell run's population.csv and histories.csv.
SEED_RUN_FINALS = ("train/loss", "val/loss", "val/accuracy", "val/r2", "dead/fraction",
                   "saturation/fraction", "grad_norm/ratio_first_last")
# The seed-mean curves (with a band: ``_lo``/``_hi``, mean -+ one standard deviation over
# seeds) a cell run logs, for MLflow's charts; the tuning metric is added first.
CELL_CURVES = ("train/loss", "val/loss", "val/balanced_accuracy", "val/r2", "dead/fraction",
               "grad_norm/ratio_first_last")
# Where a job appends its one-line JSON summary (run_all sets it; nothing parses console text).
ENV_JOB_SUMMARY = "ACTLOSS_JOB_SUMMARY"


def cell_label(cfg: DictConfig) -> str:
    arm = f"[{cfg.arm}]" if cfg.arm else ""
    return f"{cfg.activation.name}-{cfg.head.name}-{cfg.loss.name}{arm}-{cfg.task.name}"


def run_name(cfg: DictConfig) -> str:
    return f"{cell_label(cfg)}-s{cfg.seed}"


def one_model_params(cell_params: Dict[str, str], seed: int, lr: float) -> Dict[str, str]:
    """The flattened params of one model of a population, as its own one-model run has them
    (the config with this seed, one seed, this lr and no grid; tested against such runs)."""
    return {**cell_params, "seed": str(seed), "seeds": "1", "optimizer.lr": str(lr),
            "tune.lr_factors": "None"}


def log_every(cfg: DictConfig) -> int:
    """Epochs between logged points: ``tracking.log_every``, or for ``auto`` (null) about 25
    points per curve. 0 logs the final values only."""
    every = cfg.tracking.log_every
    return max(1, cfg.trainer.epochs // 25) if every is None else every


def logged_epochs(n: int, every: int) -> List[int]:
    """1-based epochs of ``n`` to log: every ``every``-th and always the last."""
    if not every:
        return []
    return [e for e in range(1, n + 1) if e % every == 0 or e == n]


def end_tags(result) -> dict:
    tags = {store.TAG_COMBO: result.combo.verdict, "combo_reason": result.combo.reason,
            store.TAG_DIAGNOSIS: ",".join(result.diagnoses) or "none"}
    if result.diverged_at_step is not None:
        tags["diverged_at_step"] = result.diverged_at_step
    return tags


def model_artifacts(cfg: DictConfig, result, plots: bool):
    arts = {"config.yaml": partial(write_text, OmegaConf.to_yaml(cfg, resolve=True))}
    if result.predictions is not None:
        arts["predictions.csv"] = partial(write_csv, result.predictions)
    if plots and result.history:
        arts["plots/diagnostics.png"] = partial(write_overview, result.history,
                                                result.predictions, run_name(cfg))
    return arts


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class Job:
    """Where a job logs: the store, the experiment, and its sweep (None for a single run)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.multirun = is_multirun()
        sweep_dir = HydraConfig.get().sweep.dir if HydraConfig.initialized() else None
        self.sweep = read_sweep_info(sweep_dir) if self.multirun else None
        self.uri = store.resolve_uri(cfg.tracking.uri)
        # The flattened config: the runs' params and, hashed, their keys (each flattening
        # resolves the whole config, ~20-30 ms).
        self.params = store.flatten_params(cfg)
        if self.sweep is None:
            store.check_store(self.uri)
            self.experiment_id = store.ensure_experiment(self.uri, cfg.tracking.experiment,
                                                         cfg.tracking.artifact_root)
            self.definition = store.definition(self.params, [])
        else:
            self.experiment_id = self.sweep["experiment_id"]
            self.definition = self.sweep["definition"]
        self.started = time.perf_counter()
        self.train_s = 0.0  # of the job's time, training; the rest is MLflow and bookkeeping
        self.models = 0

    def tags(self, **extra) -> dict:
        return {store.TAG_STATUS: "running", store.TAG_EXPERIMENT: self.cfg.claim.name or "",
                store.TAG_SWEEP: self.sweep["sweep_id"] if self.sweep else "",
                store.TAG_DEFINITION: self.definition, **extra}

    @property
    def parent_run_id(self) -> Optional[str]:
        return self.sweep["parent_run_id"] if self.sweep else None

    def earlier(self, key: str, tag: str = store.TAG_JOB_KEY):
        """Earlier runs of this job (newest first), or none when ``tracking.resume`` is off."""
        if not self.cfg.tracking.resume:
            return []
        return store.find_runs_by_key(self.uri, self.experiment_id, key, tag)

    def say(self, line: str, status: str, timed: bool = True) -> None:
        """A job's one line, with its seconds and the sweep's progress when there is one; the
        same facts as one JSON line where ``ACTLOSS_JOB_SUMMARY`` points."""
        seconds = time.perf_counter() - self.started
        tail = f" (train {self.train_s:.1f}s + mlflow {seconds - self.train_s:.1f}s)" if timed \
            else ""
        if self.sweep is not None and HydraConfig.initialized():
            tail += " " + progress_line(self.sweep, HydraConfig.get().job.num)
        print(line + tail, flush=True)
        path = os.environ.get(ENV_JOB_SUMMARY)
        if path:  # one short append per job: atomic on POSIX, so parallel jobs never interleave
            record = {"cell": cell_label(self.cfg), "status": status, "models": self.models,
                      "train_s": round(self.train_s, 3),
                      "mlflow_s": round(seconds - self.train_s, 3) if timed else 0.0}
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")


def write_seed_run(job: Job, *, name: str, params: Dict[str, str], result, cell_key: str,
                   parent_run_id: str, every: int) -> None:
    """One evaluation seed's run under its cell run: its params, its curves at ``every``
    epochs, its final values and tags (a few requests; the status tag comes last)."""
    metrics = [(e, result.history[e - 1]) for e in logged_epochs(len(result.history), every)]
    final = {**{k: v for k, v in result.final.items() if k in SEED_RUN_FINALS}, **result.test}
    store.log_finished_run(
        job.uri, job.experiment_id, run_name=name, params=params,
        history=metrics, metrics=final, step=len(result.history), status=result.status,
        tags={**job.tags(**{store.TAG_JOB_KEY: store.params_key(params),
                            store.TAG_CELL_KEY: cell_key}), **end_tags(result)},
        parent_run_id=parent_run_id)


def population_table(results, members, role: str) -> pd.DataFrame:
    """One row per model: role (tune/eval), seed, lr, status, diagnosis, final metrics."""
    rows = [{"role": role, "seed": m.seed, "lr": m.lr, "status": r.status,
             "diverged_at_step": r.diverged_at_step,
             "diagnosis": ",".join(r.diagnoses) or "none", **r.final, **r.test}
            for m, r in zip(members, results)]
    return pd.DataFrame(rows)


def history_table(results, members, role: str) -> pd.DataFrame:
    """One row per model and epoch: role, seed, lr, epoch and that epoch's metrics."""
    rows = [{"role": role, "seed": m.seed, "lr": m.lr, "epoch": epoch, **values}
            for m, r in zip(members, results) for epoch, values in enumerate(r.history, 1)]
    return pd.DataFrame(rows, columns=None if rows else ["role", "seed", "lr", "epoch"])


def seed_band_curves(histories: pd.DataFrame, metrics: List[str]) -> pd.DataFrame:
    """Per epoch: each metric's mean over seeds and its band, ``_lo``/``_hi`` = mean -+ one
    standard deviation (MLflow's own grouping offers min/avg/max only)."""
    present = [m for m in dict.fromkeys(metrics) if m in histories]
    grouped = histories.groupby("epoch")[present]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = {}
    for m in present:
        out[f"{m}_mean"], out[f"{m}_lo"], out[f"{m}_hi"] = mean[m], mean[m] - sd[m], \
            mean[m] + sd[m]
    return pd.DataFrame(out)


def chosen_predictions(chosen) -> pd.DataFrame:
    """The test predictions of the chosen models, with a seed column."""
    frames = [r.predictions.assign(seed=m.seed) for m, r in chosen if r.predictions is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def curve_points(means: pd.DataFrame, every: int):
    """(epoch, values) of the seed-mean curves (indexed by epoch 1..n) at the logged epochs."""
    for epoch in logged_epochs(int(means.index.max()), every):
        values = means.loc[epoch]
        yield epoch, {k: float(v) for k, v in values.items() if np.isfinite(v)}
