"""``actloss-bench``: the Hydra app. One job = one population = one cell of a sweep.

A job trains seeds ``seed … seed+seeds-1`` times the learning-rate grid (``tune.lr_factors``)
as one population (training.py). With one model it logs one MLflow run, per-epoch metrics and
all. With several it logs a cell-level run (config, ``population.csv``: every model's final
validation and test metrics; ``histories.csv``: every model's per-epoch metrics; the seed-mean
curves as metrics) and under it one run per seed at the learning rate selected on validation,
each with the params and ``job_key`` of that seed's one-model run.

An invalid task x head x loss cell is recorded as ``status=skipped`` (a sweep goes on; a single
run exits non-zero). A crash is recorded as ``status=failed`` and, in a sweep, does not stop the
other jobs. A job whose runs finished before is not run again (``tracking.resume``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from functools import partial
from typing import Dict, List, Optional

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from actloss_bench import protocol, tracking
from actloss_bench.artifacts import write_csv, write_overview, write_text
from actloss_bench.memory import check_fits
from actloss_bench.paths import CONF_DIR
from actloss_bench.schema import ConfigError, apply_arm, register_schema, validate
from actloss_bench.sweep import mark_sweep_interrupted, progress_line, read_sweep_info
from actloss_bench.tracking import TrackingError

register_schema()


def cell_label(cfg: DictConfig) -> str:
    arm = f"[{cfg.arm}]" if cfg.arm else ""
    return f"{cfg.activation.name}-{cfg.head.name}-{cfg.loss.name}{arm}-{cfg.task.name}"


def run_name(cfg: DictConfig) -> str:
    return f"{cell_label(cfg)}-s{cfg.seed}"


# What a population's model run carries besides its test metrics (each value costs ~0.5 ms
# in MLflow's SQL store; thousands of runs per `make run`): the headline diagnostics. Every
# metric of every model, per epoch too, is in its cell run's population.csv and histories.csv.
# The seed-mean curves a cell run logs per epoch (at the selected lr), for the MLflow UI.
CELL_CURVES = ("train/loss", "val/loss", "val/balanced_accuracy", "val/r2", "dead/fraction",
               "grad_norm/ratio_first_last")
SEED_RUN_FINALS = ("train/loss", "val/loss", "val/accuracy", "val/r2", "dead/fraction",
                   "saturation/fraction", "grad_norm/ratio_first_last")


def one_model_params(cell_params: Dict[str, str], seed: int, lr: float) -> Dict[str, str]:
    """The flattened params of one model of a population, as its own one-model run has them
    (the config with this seed, one seed, this lr and no grid; tested against such runs)."""
    return {**cell_params, "seed": str(seed), "seeds": "1", "optimizer.lr": str(lr),
            "tune.lr_factors": "None"}


def _summary(result) -> str:
    keys = ("test/accuracy", "test/balanced_accuracy", "test/ece", "test/r2", "test/rmse")
    shown = " ".join(f"{k[5:]}={result.test[k]:.3f}" for k in keys if k in result.test)
    dead = result.final.get("dead/fraction")
    shown += f" dead={dead:.2f}" if dead is not None else ""
    return f"{shown} diagnosis={','.join(result.diagnoses) or 'none'}".strip()


def _end_tags(result) -> dict:
    tags = {tracking.TAG_COMBO: result.combo.verdict, "combo_reason": result.combo.reason,
            tracking.TAG_DIAGNOSIS: ",".join(result.diagnoses) or "none"}
    if result.diverged_at_step is not None:
        tags["diverged_at_step"] = result.diverged_at_step
    return tags


def _model_artifacts(cfg: DictConfig, result, plots: bool):
    arts = {"config.yaml": partial(write_text, OmegaConf.to_yaml(cfg, resolve=True))}
    if result.predictions is not None:
        arts["predictions.csv"] = partial(write_csv, result.predictions)
    if plots and result.history:
        arts["plots/diagnostics.png"] = partial(write_overview, result.history,
                                                result.predictions, run_name(cfg))
    return arts


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class Job:
    """Where a job logs: the store, the experiment, and its sweep (None for a single run)."""

    def __init__(self, cfg: DictConfig, signals: "_JobSignals"):
        self.cfg = cfg
        self.signals = signals
        self.multirun = _is_multirun()
        sweep_dir = HydraConfig.get().sweep.dir if HydraConfig.initialized() else None
        self.sweep = read_sweep_info(sweep_dir) if self.multirun else None
        self.uri = tracking.resolve_uri(cfg.tracking.uri)
        # The flattened config: the runs' params and, hashed, their keys (each flattening
        # resolves the whole config, ~20-30 ms).
        self.params = tracking.flatten_params(cfg)
        if self.sweep is None:
            tracking.check_store(self.uri)
            self.experiment_id = tracking.ensure_experiment(self.uri, cfg.tracking.experiment,
                                                            cfg.tracking.artifact_root)
            self.definition = tracking.definition(self.params, [])
        else:
            self.experiment_id = self.sweep["experiment_id"]
            self.definition = self.sweep["definition"]
        self.started = time.perf_counter()
        self.train_s = 0.0  # of the job's time, training; the rest is MLflow and bookkeeping

    def tags(self, **extra) -> dict:
        return {tracking.TAG_STATUS: "running", tracking.TAG_EXPERIMENT: self.cfg.claim.name or "",
                tracking.TAG_SWEEP: self.sweep["sweep_id"] if self.sweep else "",
                tracking.TAG_DEFINITION: self.definition, **extra}

    @property
    def parent_run_id(self) -> Optional[str]:
        return self.sweep["parent_run_id"] if self.sweep else None

    def say(self, line: str, timed: bool = True) -> None:
        """A job's one line, with its seconds and the sweep's progress when there is one."""
        seconds = time.perf_counter() - self.started
        tail = f" (train {self.train_s:.1f}s + mlflow {seconds - self.train_s:.1f}s)" if timed \
            else ""
        if self.sweep is not None and HydraConfig.initialized():
            tail += " " + progress_line(self.sweep, HydraConfig.get().job.num)
        print(line + tail, flush=True)


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM (``scancel``, ``kill``) in a job, so the job records itself as
    interrupted before it exits. A BaseException: Hydra and the sweep treat it as a stop, not
    as one failed job to note and pass over."""


class _JobSignals:
    """SIGINT and SIGTERM during a job: raised at once while models train (``training()``);
    held while the job writes to MLflow and raised when it is done, so no run is left
    half-written (a run started but not finished would look as if it still ran)."""

    def __init__(self):
        self.pending: Optional[str] = None
        self.live = False

    def handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.live and self.pending is None:
            self.pending = name
            raise Interrupted(name)
        self.pending = self.pending or name  # e.g. Slurm signals srun and the job alike

    @contextmanager
    def training(self):
        if self.pending:
            raise Interrupted(self.pending)
        self.live = True
        try:
            yield
        finally:
            self.live = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # main thread only
            yield
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.pending:  # held while the job finished writing: stop now
            raise Interrupted(self.pending)


class JobInterrupted(Exception):
    """Interrupted, as raised in a job process of its own (a Slurm or submitit job): an
    Exception there, so the launcher gets the job's error back and the sweep reports it, where
    a BaseException would leave the launcher waiting for a result that never comes."""


# The process that ran ``main`` (the basic launcher runs its jobs there: a signal stops the whole
# sweep), by pid in the environment that job processes inherit: launchers may pickle the task
# function with its module's globals, so a global would travel with it.
LAUNCHER_PID = "ACTLOSS_LAUNCHER_PID"


def _signal_name(e: BaseException) -> str:
    return "SIGINT" if isinstance(e, KeyboardInterrupt) else str(e)


def run_job(cfg: DictConfig) -> Optional[float]:
    """Train, log and summarise one job; returns the validation score for sweepers."""
    apply_arm(cfg)
    validate(cfg)
    check_fits(cfg)
    signals = _JobSignals()
    with signals.installed():
        job = Job(cfg, signals)
        population = protocol.members(cfg)
        if len(population) == 1:
            return _one_model(job)
        return _population(job, population)


def _one_model(job: Job) -> Optional[float]:
    from actloss_bench.training import train

    cfg = job.cfg
    key = tracking.params_key(job.params)
    earlier = tracking.find_runs_by_key(job.uri, job.experiment_id, key) if cfg.tracking.resume \
        else []
    done = [r for r in earlier if tracking.is_finished(r)]
    if done:
        job.say(f"[done] {run_name(cfg)}: finished before as run {done[0].info.run_id[:8]}",
                timed=False)
        return None
    logger = tracking.RunLogger.start(
        job.uri, job.experiment_id, run_name=run_name(cfg),
        params=job.params, tags=job.tags(**{tracking.TAG_JOB_KEY: key}),
        parent_run_id=job.parent_run_id, flush_every_s=cfg.tracking.flush_every_s)
    tracking.supersede(job.uri, [(r.info.run_id, r.info.status) for r in earlier],
                       logger.run_id)
    every = cfg.tracking.log_every

    def on_epoch(epoch: int, values) -> None:
        if every and epoch % every == 0:
            logger.log_epoch(epoch, values)
    result = _trained(job, logger, run_name(cfg), lambda: train(cfg, on_epoch=on_epoch))
    if result is None:
        return None
    if every and result.history and len(result.history) % every:
        logger.log_epoch(len(result.history), result.final)  # the last epoch is always logged
    logger.finish(status=result.status, metrics=result.test, tags=_end_tags(result),
                  artifacts=_model_artifacts(cfg, result, cfg.tracking.log_plots),
                  step=len(result.history))
    job.say(f"[{result.status}] {run_name(cfg)}: {_summary(result)} (run {logger.run_id[:8]})")
    final = result.final
    return final.get("val/accuracy", final.get("val/r2"))


def _trained(job: Job, logger, name: str, train_fn):
    """``train_fn()``, timed; an invalid cell is recorded as skipped and a crash as failed
    (None then; a single run re-raises)."""
    from actloss_bench.training import InvalidCombination

    started = time.perf_counter()
    try:
        with job.signals.training():
            return train_fn()
    except (KeyboardInterrupt, Interrupted) as e:
        by = _signal_name(e)
        logger.finish(status=tracking.INTERRUPTED, tags={"interrupted_by": by})
        job.say(f"[{tracking.INTERRUPTED}] {name}: {by}; the same command again finishes it")
        raise
    except InvalidCombination as e:
        logger.finish(status="skipped", tags={tracking.TAG_COMBO: "invalid", "skip_reason": str(e),
                                              tracking.TAG_DIAGNOSIS: "none"})
        job.say(f"[skipped] {name}: invalid combination: {e}")
        if not job.multirun:
            raise
    except Exception as e:
        _record_failure(job, logger, name, e)
    finally:
        job.train_s = time.perf_counter() - started
    return None


def _record_failure(job: Job, logger, name: str, e: BaseException) -> None:
    logger.finish(status="failed", tags={"error": f"{type(e).__name__}: {e}"[:4000]},
                  artifacts={"traceback.txt": partial(write_text, traceback.format_exc()),
                             "config.yaml": partial(write_text, OmegaConf.to_yaml(job.cfg))})
    job.say(f"[failed] {name}: {type(e).__name__}: {e}")
    if not job.multirun or not isinstance(e, Exception):
        raise e


def population_table(results, population) -> pd.DataFrame:
    """One row per model: seed, lr, status, diagnosis and its final train/val/test metrics."""
    rows = []
    for m, r in zip(population, results):
        rows.append({"seed": m.seed, "lr": m.lr, "status": r.status,
                     "diverged_at_step": r.diverged_at_step,
                     "diagnosis": ",".join(r.diagnoses) or "none", **r.final, **r.test})
    return pd.DataFrame(rows)


def history_table(results, population) -> pd.DataFrame:
    """One row per model and epoch: seed, lr, epoch and that epoch's metrics."""
    rows = [{"seed": m.seed, "lr": m.lr, "epoch": epoch, **values}
            for m, r in zip(population, results) for epoch, values in enumerate(r.history, 1)]
    return pd.DataFrame(rows, columns=None if rows else ["seed", "lr", "epoch"])


def _chosen_predictions(chosen) -> pd.DataFrame:
    """The test predictions of the selected models, with a seed column."""
    frames = [r.predictions.assign(seed=m.seed) for m, r in chosen if r.predictions is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _population(job: Job, population) -> Optional[float]:
    from actloss_bench.training import train_population

    cfg = job.cfg
    key = tracking.params_key(job.params)
    label = cell_label(cfg)
    earlier = (tracking.find_runs_by_key(job.uri, job.experiment_id, key, tracking.TAG_CELL_KEY)
               if cfg.tracking.resume else [])
    cells = [r for r in earlier if r.data.tags.get(tracking.TAG_ROLE) == "cell"]
    done = [r for r in cells if tracking.is_finished(r)]
    if done:
        if job.sweep is not None:  # this sweep counts the finished cell as its own
            tracking.append_tag(job.uri, done[0], tracking.TAG_REUSED, job.sweep["sweep_id"])
        job.say(f"[done] {label}: finished before as cell run {done[0].info.run_id[:8]}",
                timed=False)
        return None
    finished_models = {r.data.tags.get(tracking.TAG_JOB_KEY) for r in earlier
                       if r.data.tags.get(tracking.TAG_ROLE) != "cell" and tracking.is_finished(r)}

    cell = tracking.RunLogger.start(
        job.uri, job.experiment_id, run_name=f"{label} x{len(population)}",
        params=job.params,
        tags=job.tags(**{tracking.TAG_ROLE: "cell", tracking.TAG_CELL_KEY: key}),
        parent_run_id=job.parent_run_id)
    tracking.supersede(job.uri, [(r.info.run_id, r.info.status) for r in cells], cell.run_id)
    results = _trained(job, cell, label, lambda: train_population(cfg, population))
    if results is None:
        return None
    try:
        return _log_population(job, cell, key, label, population, results, finished_models)
    except Exception as e:
        _record_failure(job, cell, label, e)
        return None


def _log_population(job: Job, cell, key: str, label: str, population, results,
                    finished_models) -> float:
    """The selected models' runs under the cell run, then the cell run's tables and curves."""
    cfg = job.cfg
    table = population_table(results, population)
    metric = protocol.tuning_metric(cfg, results[0].kind)
    if metric not in table:  # every model diverged in its first epoch
        table[metric] = float("nan")
    lr = protocol.select_lr(table[["lr", "status", metric]], metric)
    table["selected"] = table["lr"] == lr
    chosen = [(m, r) for m, r in zip(population, results) if m.lr == lr]
    every = cfg.tracking.log_every
    for m, r in chosen:
        params = one_model_params(job.params, m.seed, m.lr)
        model_key = tracking.params_key(params)
        if model_key in finished_models:
            continue
        name = f"{label}-s{m.seed}"
        if every:  # per-epoch metrics on the model's run too (experiments keep them in the cell)
            run = tracking.RunLogger.start(
                job.uri, job.experiment_id, run_name=name, params=params,
                tags=job.tags(**{tracking.TAG_JOB_KEY: model_key, tracking.TAG_CELL_KEY: key}),
                parent_run_id=cell.run_id)
            for epoch, values in enumerate(r.history, 1):
                if epoch % every == 0 or epoch == len(r.history):
                    run.log_epoch(epoch, values)
            run.finish(status=r.status, metrics=r.test, tags=_end_tags(r), step=len(r.history))
        else:
            tracking.log_finished_run(
                job.uri, job.experiment_id, run_name=name, params=params,
                metrics={**{k: v for k, v in r.final.items() if k in SEED_RUN_FINALS},
                         **r.test}, step=len(r.history), status=r.status,
                tags={**job.tags(**{tracking.TAG_JOB_KEY: model_key,
                                    tracking.TAG_CELL_KEY: key}), **_end_tags(r)},
                parent_run_id=cell.run_id)

    histories = history_table(results, population)
    chosen_ok = histories[(histories["lr"] == lr)]
    curves = [c for c in CELL_CURVES if c in chosen_ok]
    if not chosen_ok.empty:
        means = chosen_ok.groupby("epoch")[curves].mean()
        for epoch, values in means.iterrows():
            cell.log_epoch(int(epoch), values.dropna().to_dict())
    statuses = table["status"].value_counts().to_dict()
    cell.finish(status="ok", tags={"selected_lr": lr, "tuning_metric": metric,
                                   "models": len(population),
                                   **{f"models_{s}": n for s, n in statuses.items()}},
                artifacts={"config.yaml": partial(write_text, OmegaConf.to_yaml(cfg, resolve=True)),
                           "population.csv": partial(write_csv, table),
                           "histories.csv": partial(write_csv, histories),
                           "predictions.csv": partial(write_csv, _chosen_predictions(chosen))})
    picked = table[table["selected"]]
    score = picked[metric].astype(float)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    job.say(f"[ok] {label}: {len(population)} models ({counts}); lr {lr:g} selected on "
            f"{metric} = {score.mean():.3f} over {len(picked)} seeds")
    return float(score.mean())


def fail(e: BaseException, code: int = 2) -> None:
    """Report an expected error in one line and exit (SystemExit passes through Hydra)."""
    print(f"actloss-bench: error: {e}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> Optional[float]:
    from actloss_bench.training import InvalidCombination

    try:
        return run_job(cfg)
    except Interrupted as e:
        if os.environ.get(LAUNCHER_PID) == str(os.getpid()):
            raise
        raise JobInterrupted(f"job interrupted by {e}; the same command again finishes it") \
            from None
    except (ConfigError, TrackingError) as e:
        fail(e)
    except InvalidCombination as e:
        fail(e, code=1)


_HELP_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg", "--shell-completion"}


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry: one-line errors for bad overrides, then Hydra."""
    from actloss_bench.preflight import check_overrides

    os.environ[LAUNCHER_PID] = str(os.getpid())
    args = sys.argv[1:] if argv is None else argv
    if not _HELP_FLAGS.intersection(args):
        try:
            check_overrides([a for a in args if not a.startswith("-")])
        except ConfigError as e:
            fail(e)
    try:
        _hydra_entry()
    except (KeyboardInterrupt, Interrupted) as e:
        by = _signal_name(e)
        mark_sweep_interrupted(by)
        print(f"actloss-bench: interrupted ({by}): finished jobs are kept; the same command "
              f"again runs the rest", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
