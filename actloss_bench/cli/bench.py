"""``actloss-bench``: the Hydra app. One job = one population = one cell of a sweep.

A job trains the protocol's models (engine/protocol.py: tuning seeds over the learning-rate
grid, then evaluation seeds at the chosen rate and at the default rate) and logs them
(tracking/job.py). An invalid task x head x loss cell is recorded as ``status=skipped`` (a sweep
goes on; a single run exits non-zero, and so does its re-run). A crash is recorded as
``status=failed`` and, in a sweep, does not stop the other jobs. A job whose runs finished
before is not run again (``tracking.resume``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from functools import partial
from typing import List, Optional

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from actloss_bench.config.memory import check_fits
from actloss_bench.config.paths import CONF_DIR
from actloss_bench.config.schema import ConfigError, apply_arm, register_schema, validate
from actloss_bench.engine import protocol
from actloss_bench.tracking import store
from actloss_bench.tracking.artifacts import write_csv, write_text
from actloss_bench.cli.signals import (LAUNCHER_PID, Interrupted, JobInterrupted,
                                       JobSignals)
from actloss_bench.engine.tuning import Trained, train_protocol
from actloss_bench.tracking.job import (CELL_CURVES, Job, cell_label, chosen_predictions,
                                        curve_points, end_tags, history_table, is_multirun,
                                        log_every, model_artifacts, one_model_params,
                                        population_table, run_name, seed_band_curves,
                                        write_seed_run)
from actloss_bench.tracking.store import TrackingError
from actloss_bench.tracking.sweep import mark_sweep_interrupted

register_schema()


def _summary(result) -> str:
    keys = ("test/accuracy", "test/balanced_accuracy", "test/ece", "test/r2", "test/rmse")
    shown = " ".join(f"{k[5:]}={result.test[k]:.3f}" for k in keys if k in result.test)
    dead = result.final.get("dead/fraction")
    shown += f" dead={dead:.2f}" if dead is not None else ""
    return f"{shown} diagnosis={','.join(result.diagnoses) or 'none'}".strip()


def _signal_name(e: BaseException) -> str:
    return "SIGINT" if isinstance(e, KeyboardInterrupt) else str(e)


def run_job(cfg: DictConfig) -> Optional[float]:
    """Train, log and summarise one job; returns the validation score for sweepers."""
    apply_arm(cfg)
    validate(cfg)
    if cfg.claim.name and not is_multirun():
        raise ConfigError(f"experiment={cfg.claim.name} is a sweep of its arms and conditions; "
                          f"add -m: actloss-bench -m experiment={cfg.claim.name}")
    check_device(cfg)
    check_fits(cfg)
    signals = JobSignals()
    with signals.installed():
        job = Job(cfg)
        if protocol.is_tuned(cfg) or cfg.seeds > 1:
            return _population(job, signals)
        return _one_model(job, signals)


def check_device(cfg: DictConfig) -> None:
    """A CUDA request without CUDA is refused before anything is logged or trained."""
    if cfg.trainer.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda is not available: this torch sees no CUDA "
                              "device; use trainer.device=auto or trainer.device=cpu")


def _skipped_before(job: Job, run) -> bool:
    """A re-run of an invalid cell ends as the first run did: a sweep notes it, a single run
    exits non-zero with the same reason."""
    from actloss_bench.engine.training import InvalidCombination

    if run.data.tags.get(store.TAG_STATUS) != "skipped":
        return False
    reason = run.data.tags.get("skip_reason", "invalid combination")
    job.say(f"[skipped] {cell_label(job.cfg)}: invalid combination: {reason}", "skipped",
            timed=False)
    if not job.multirun:
        raise InvalidCombination(reason)
    return True


def _one_model(job: Job, signals: JobSignals) -> Optional[float]:
    from actloss_bench.engine.training import train

    cfg = job.cfg
    key = store.params_key(job.params)
    earlier = job.earlier(key)
    done = [r for r in earlier if store.is_finished(r)]
    if done:
        if not _skipped_before(job, done[0]):
            job.say(f"[done] {run_name(cfg)}: finished before as run "
                    f"{done[0].info.run_id[:8]}", "done", timed=False)
        return None
    logger = store.RunLogger.start(
        job.uri, job.experiment_id, run_name=run_name(cfg),
        params=job.params, tags=job.tags(**{store.TAG_JOB_KEY: key}),
        parent_run_id=job.parent_run_id, flush_every_s=cfg.tracking.flush_every_s)
    store.supersede(job.uri, [(r.info.run_id, r.info.status) for r in earlier], logger.run_id)
    every = log_every(cfg)

    def on_epoch(epoch: int, values) -> None:
        if every and epoch % every == 0:
            logger.log_epoch(epoch, values)
    job.models = 1
    result = _trained(job, signals, logger, run_name(cfg),
                      lambda: train(cfg, on_epoch=on_epoch, eval_every=every))
    if result is None:
        return None
    n = len(result.history)
    if every and n and n % every:
        logger.log_epoch(n, result.final)  # the last epoch is always logged
    logger.finish(status=result.status, metrics=result.test, tags=end_tags(result),
                  artifacts=model_artifacts(cfg, result, cfg.tracking.log_plots), step=n)
    job.say(f"[{result.status}] {run_name(cfg)}: {_summary(result)} (run {logger.run_id[:8]})",
            result.status)
    final = result.final
    return final.get("val/accuracy", final.get("val/r2"))


def _trained(job: Job, signals: JobSignals, logger, name: str, train_fn):
    """``train_fn()``, timed; an invalid cell is recorded as skipped and a crash as failed
    (None then; a single run re-raises)."""
    from actloss_bench.engine.training import InvalidCombination

    started = time.perf_counter()
    try:
        with signals.training():
            return train_fn()
    except (KeyboardInterrupt, Interrupted) as e:
        by = _signal_name(e)
        logger.finish(status=store.INTERRUPTED, tags={"interrupted_by": by})
        job.say(f"[{store.INTERRUPTED}] {name}: {by}; the same command again finishes it",
                store.INTERRUPTED)
        raise
    except InvalidCombination as e:
        logger.finish(status="skipped", tags={store.TAG_COMBO: "invalid", "skip_reason": str(e),
                                              store.TAG_DIAGNOSIS: "none"})
        job.say(f"[skipped] {name}: invalid combination: {e}", "skipped")
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
    job.say(f"[failed] {name}: {type(e).__name__}: {e}", "failed")
    if not job.multirun or not isinstance(e, Exception):
        raise e


def _population(job: Job, signals: JobSignals) -> Optional[float]:
    cfg = job.cfg
    key = store.params_key(job.params)
    label = cell_label(cfg)
    earlier = job.earlier(key, store.TAG_CELL_KEY)
    cells = [r for r in earlier if r.data.tags.get(store.TAG_ROLE) == "cell"]
    done = [r for r in cells if store.is_finished(r)]
    if done:
        if job.sweep is not None:  # this sweep counts the finished cell as its own
            store.append_tag(job.uri, done[0], store.TAG_REUSED, job.sweep["sweep_id"])
        if not _skipped_before(job, done[0]):
            job.say(f"[done] {label}: finished before as cell run {done[0].info.run_id[:8]}",
                    "done", timed=False)
        return None
    finished_models = {r.data.tags.get(store.TAG_JOB_KEY) for r in earlier
                       if r.data.tags.get(store.TAG_ROLE) != "cell" and store.is_finished(r)}
    cell = store.RunLogger.start(
        job.uri, job.experiment_id, run_name=f"{label} x{protocol.models_per_job(cfg)}",
        params=job.params,
        tags=job.tags(**{store.TAG_ROLE: "cell", store.TAG_CELL_KEY: key}),
        parent_run_id=job.parent_run_id)
    store.supersede(job.uri, [(r.info.run_id, r.info.status) for r in cells], cell.run_id)
    trained = _trained(job, signals, cell, label, lambda: train_protocol(cfg))
    if trained is None:
        return None
    try:
        return _log_population(job, cell, key, label, trained, finished_models)
    except Exception as e:
        _record_failure(job, cell, label, e)
        return None


def _log_population(job: Job, cell, key: str, label: str, trained: Trained,
                    finished_models) -> float:
    """The chosen evaluation models' runs under the cell run, then the cell run's tables and
    curves."""
    cfg = job.cfg
    metric = trained.metric
    chosen_lr = trained.chosen if trained.chosen is not None else protocol.default_lr(cfg)
    table = pd.concat([population_table(trained.tuning, trained.tuning_members, protocol.TUNE),
                       population_table(trained.evaluation, trained.evaluation_members,
                                        protocol.EVAL)], ignore_index=True)
    table["selected"] = (table["role"] == protocol.EVAL) & (table["lr"] == chosen_lr)
    job.models = len(table)
    chosen = [(m, r) for m, r in zip(trained.evaluation_members, trained.evaluation)
              if m.lr == chosen_lr]
    every = log_every(cfg)
    for m, r in chosen:
        params = one_model_params(job.params, m.seed, m.lr)
        if store.params_key(params) in finished_models:
            continue
        write_seed_run(job, name=f"{label}-s{m.seed}", params=params, result=r, cell_key=key,
                       parent_run_id=cell.run_id, every=every)
    histories = pd.concat([history_table(trained.tuning, trained.tuning_members, protocol.TUNE),
                           history_table(trained.evaluation, trained.evaluation_members,
                                         protocol.EVAL)], ignore_index=True)
    chosen_hist = histories[(histories["role"] == protocol.EVAL)
                            & (histories["lr"] == chosen_lr)]
    if not chosen_hist.empty:
        bands = seed_band_curves(chosen_hist, [metric, *CELL_CURVES])
        for epoch, values in curve_points(bands, max(every, 1)):
            cell.log_epoch(epoch, values)
    statuses = table["status"].value_counts().to_dict()
    tags = {"selected_lr": chosen_lr, "tuning_metric": metric, "models": len(table),
            **{f"models_{s}": n for s, n in statuses.items()}}
    if trained.grid:
        tags.update(lr_grid=",".join(f"{lr:g}" for lr in trained.grid),
                    lr_at_grid_limit=str(trained.at_limit).lower())
    cell.finish(status="ok", tags=tags,
                artifacts={"config.yaml": partial(write_text, OmegaConf.to_yaml(cfg, resolve=True)),
                           "population.csv": partial(write_csv, table),
                           "histories.csv": partial(write_csv, histories),
                           "predictions.csv": partial(write_csv, chosen_predictions(chosen))})
    picked = table[table["selected"]]
    score = picked[metric].astype(float) if metric in picked else pd.Series([np.nan])
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    how = (f"lr {chosen_lr:g} chosen on {metric} of {len(trained.tuning)} tuning models"
           + (" (at the grid's limit)" if trained.at_limit else "")
           if trained.grid else f"lr {chosen_lr:g}")
    job.say(f"[ok] {label}: {len(table)} models ({counts}); {how}; {metric} = "
            f"{score.mean():.3f} over {len(picked)} evaluation seeds", "ok")
    return float(score.mean())


def fail(e: BaseException, code: int = 2) -> None:
    """Report an expected error in one line and exit (SystemExit passes through Hydra)."""
    print(f"actloss-bench: error: {e}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> Optional[float]:
    from actloss_bench.engine.training import InvalidCombination

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
    from actloss_bench.config.preflight import check_overrides

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
