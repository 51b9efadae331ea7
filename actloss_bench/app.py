"""``actloss-bench``: the Hydra app. One job = one training run = one MLflow run.

``run_job`` wires config -> training -> MLflow; the training itself lives in training.py and
knows nothing of MLflow. An invalid task x head x loss cell is recorded as ``status=skipped``
(a sweep goes on; a single run exits non-zero). A crash is recorded as ``status=failed`` and,
in a sweep, does not stop the other jobs.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from functools import partial
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from actloss_bench import tracking
from actloss_bench.artifacts import write_csv, write_overview, write_text
from actloss_bench.logwriter import RUN_ID_MARK, writer_for
from actloss_bench.paths import CONF_DIR
from actloss_bench.schema import ConfigError, apply_arm, register_schema, validate
from actloss_bench.sweep import read_sweep_info
from actloss_bench.tracking import TrackingError
from actloss_bench.vectorized import config_for_seed

register_schema()


def _run_name(cfg: DictConfig) -> str:
    arm = f"[{cfg.arm}]" if cfg.arm else ""
    return (f"{cfg.activation.name}-{cfg.head.name}-{cfg.loss.name}{arm}-{cfg.task.name}"
            f"-s{cfg.seed}")


def _summary_line(cfg: DictConfig, result, seconds: float, run_id: str = RUN_ID_MARK) -> str:
    """``[status] name: test metrics dead=... diagnosis=... (seconds, run id)``."""
    keys = ("test/accuracy", "test/balanced_accuracy", "test/ece", "test/r2", "test/rmse")
    shown = " ".join(f"{k[5:]}={result.test[k]:.3f}" for k in keys if k in result.test)
    dead = result.final.get("dead/fraction")
    shown += f" dead={dead:.2f}" if dead is not None else ""
    diag = ",".join(result.diagnoses) or "none"
    return (f"[{result.status}] {_run_name(cfg)}: {shown} diagnosis={diag} ({seconds:.1f}s, "
            f"run {run_id})").replace(":  ", ": ")


def start_artifacts(cfg: DictConfig):
    """Artifacts logged when a run starts: ``config.yaml`` (so a run that crashes has it too)."""
    return {"config.yaml": partial(write_text, OmegaConf.to_yaml(cfg, resolve=True))}


def start_logged_run(writer, experiment_id: str, cfg: DictConfig, *, run_name: str,
                     tags, **extra):
    """The writer's run for one job's config, started as every job starts it: flattened
    params, flush spacing, its last epoch (held for ``finish``) and ``start_artifacts``.
    ``extra``: ``parent_run_id``, ``supersedes``."""
    return writer.start_run(experiment_id, run_name=run_name, params=tracking.flatten_params(cfg),
                            tags=tags, flush_every_s=cfg.tracking.flush_every_s,
                            last_step=cfg.trainer.epochs, artifacts=start_artifacts(cfg),
                            **extra)


def run_artifacts(cfg: DictConfig, result, log_plots: bool):
    """Artifact writers of a finished run (predictions.csv, plots/), as picklable partials:
    the log writer process calls them, so the figure is drawn off the critical path."""
    arts = {}
    if result.predictions is not None:
        arts["predictions.csv"] = partial(write_csv, result.predictions)
    if log_plots and result.history:
        arts["plots/diagnostics.png"] = partial(write_overview, result.history,
                                                result.predictions, _run_name(cfg))
    return arts


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _pending_jobs(cfg: DictConfig, uri: str, experiment_id: str):
    """(config, job_key, earlier attempts) of each seed this job covers that is not done yet."""
    k = cfg.trainer.vectorize_seeds
    configs = [cfg] if k == 1 else [config_for_seed(cfg, s) for s in range(cfg.seed, cfg.seed + k)]
    pending = []
    for one in configs:
        key = tracking.job_key(one)
        earlier = tracking.find_runs_by_key(uri, experiment_id, key) if cfg.tracking.resume else []
        done = [r for r in earlier
                if r.data.tags.get(tracking.TAG_STATUS) in tracking.FINISHED_STATUSES]
        if done:
            print(f"[done] {_run_name(one)}: finished before as run {done[0].info.run_id[:8]} "
                  f"(job_key {key}); not run again")
        else:
            pending.append((one, key, earlier))
    return pending


def _log_every(every: int, logger, epoch: int, values) -> None:
    if epoch % every == 0:
        logger.log_epoch(epoch, values)


def epoch_logger(run, every: int):
    """The ``on_epoch`` callback logging every ``every``-th epoch's metrics to ``run``
    (``tracking.log_every``; ``log_last_epoch`` completes it when training ends)."""
    return run.log_epoch if every == 1 else partial(_log_every, every, run)


def log_last_epoch(run, history, every: int) -> None:
    """Log the final epoch if ``epoch_logger`` skipped it: the last epoch is always logged."""
    if history and len(history) % every:
        run.log_epoch(len(history), history[-1])


def _record_failure(loggers, configs, e: BaseException, trace: str) -> None:
    for logger, one in zip(loggers, configs):
        print(f"[failed] {_run_name(one)}: {type(e).__name__}: {e}")
        logger.finish(status="failed", tags={"error": f"{type(e).__name__}: {e}"[:4000]},
                      artifacts={"traceback.txt": partial(write_text, trace)})


def run_job(cfg: DictConfig) -> Optional[float]:
    """Train, log and summarise one job. Returns the final validation score for sweepers.

    With ``trainer.vectorize_seeds=K`` the job covers seeds seed..seed+K-1, trained as one
    batched model and logged as K runs, each exactly as its sequential job would be.
    """
    apply_arm(cfg)
    validate(cfg)
    multirun = _is_multirun()
    sweep_dir = HydraConfig.get().sweep.dir if HydraConfig.initialized() else None
    sweep = read_sweep_info(sweep_dir) if multirun else None
    uri = tracking.resolve_uri(cfg.tracking.uri)
    if sweep is None:
        tracking.check_store(uri)
    # Started before this process's own MLflow calls, so that the writer's start-up overlaps
    # them (a basic launcher's sweep has started it already).
    writer = writer_for(uri, warm_plots=cfg.tracking.log_plots)
    if sweep is None:
        experiment_id = tracking.ensure_experiment(uri, cfg.tracking.experiment,
                                                   cfg.tracking.artifact_root)
    else:
        experiment_id = sweep["experiment_id"]

    pending = _pending_jobs(cfg, uri, experiment_id)
    if not pending:
        return None
    # A job may leave its runs to the writer and return only when the sweep's launching
    # process (which drains every writer at the end) is this process: the basic launcher.
    # A single run, or a job in a worker process (joblib, submitit, ...), waits for its writes.
    wait_for_writes = sweep is None or sweep.get("pid") != os.getpid()
    try:
        return _train_and_log(cfg, pending, writer, experiment_id, sweep, multirun)
    finally:
        if wait_for_writes:
            errors = writer.drain()
            if errors:
                raise TrackingError(errors[0] + (f" (and {len(errors) - 1} more)"
                                                 if len(errors) > 1 else ""))


def _train_and_log(cfg: DictConfig, pending, writer, experiment_id: str, sweep,
                   multirun: bool) -> Optional[float]:
    from actloss_bench.training import InvalidCombination, train
    from actloss_bench.vectorized import train_seeds

    configs = [one for one, _, _ in pending]
    loggers = []
    for one, key, earlier in pending:
        tags = {tracking.TAG_STATUS: "running", tracking.TAG_JOB_KEY: key,
                tracking.TAG_EXPERIMENT: cfg.claim.name or "",
                tracking.TAG_SWEEP: sweep["sweep_id"] if sweep else ""}
        if cfg.trainer.vectorize_seeds > 1:
            tags["vectorized_with"] = cfg.trainer.vectorize_seeds
        loggers.append(start_logged_run(
            writer, experiment_id, one, run_name=_run_name(one), tags=tags,
            parent_run_id=sweep["parent_run_id"] if sweep else None,
            supersedes=[(r.info.run_id, r.info.status) for r in earlier]))

    every = cfg.tracking.log_every
    on_epoch = [epoch_logger(lg, every) for lg in loggers]
    started = time.perf_counter()
    try:
        if cfg.trainer.vectorize_seeds == 1:
            results = [train(cfg, on_epoch=on_epoch[0])]
        else:
            results = train_seeds(cfg, [one.seed for one in configs], on_epoch=on_epoch)
    except InvalidCombination as e:
        for logger, one in zip(loggers, configs):
            logger.finish(status="skipped", tags={tracking.TAG_COMBO: "invalid",
                                                  "skip_reason": str(e),
                                                  tracking.TAG_DIAGNOSIS: "none"})
            print(f"[skipped] {_run_name(one)}: invalid combination: {e}")
        if not multirun:
            raise
        return None
    except BaseException as e:  # noqa: BLE001 - recorded, then re-raised or swallowed below
        _record_failure(loggers, configs, e, traceback.format_exc())
        if not multirun or not isinstance(e, Exception):
            raise
        return None

    seconds = (time.perf_counter() - started) / len(results)
    for logger, one, result in zip(loggers, configs, results):
        end_tags = {tracking.TAG_COMBO: result.combo.verdict, "combo_reason": result.combo.reason,
                    tracking.TAG_DIAGNOSIS: ",".join(result.diagnoses) or "none"}
        if result.diverged_at_step is not None:
            end_tags["diverged_at_step"] = result.diverged_at_step
        log_last_epoch(logger, result.history, every)
        logger.finish(status=result.status, metrics=result.test, tags=end_tags,
                      artifacts=run_artifacts(one, result, cfg.tracking.log_plots),
                      step=len(result.history), summary=_summary_line(one, result, seconds))
    final = results[0].final
    return final.get("val/accuracy", final.get("val/r2"))


def fail(e: BaseException, code: int = 2) -> None:
    """Report an expected error in one line and exit (SystemExit passes through Hydra)."""
    print(f"actloss-bench: error: {e}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> Optional[float]:
    from actloss_bench.training import InvalidCombination

    try:
        return run_job(cfg)
    except (ConfigError, TrackingError) as e:
        fail(e)
    except InvalidCombination as e:
        fail(e, code=1)


_HELP_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg", "--shell-completion"}


def main() -> None:
    """Console entry: one-line errors for bad overrides, then Hydra."""
    from actloss_bench.preflight import check_overrides

    args = sys.argv[1:]
    if not _HELP_FLAGS.intersection(args):
        try:
            check_overrides([a for a in args if not a.startswith("-")])
        except ConfigError as e:
            fail(e)
    _hydra_entry()


if __name__ == "__main__":
    main()
