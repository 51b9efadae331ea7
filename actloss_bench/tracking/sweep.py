"""Hydra callback that gives a multirun one MLflow parent run, created before any job starts.

Creating the database and the experiment here, in the launching process, is what keeps
parallel launchers safe: a fresh SQLite file opened by several processes at once crashes some of
them, and racing ``set_experiment`` calls silently put runs in the Default experiment.
Jobs find the parent through ``<sweep dir>/actloss_sweep.json`` (shared file systems: local,
joblib, submitit) or the ``ACTLOSS_SWEEP_FILE`` variable.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from actloss_bench.engine import protocol
from actloss_bench.tracking import store
from actloss_bench.tracking.view import key_metrics, write_runs_view

SWEEP_FILE = "actloss_sweep.json"
ENV_SWEEP_FILE = "ACTLOSS_SWEEP_FILE"


def _identity(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text()).get("identity")
    except (OSError, ValueError):
        return None


def read_sweep_info(sweep_dir: Optional[str]) -> Optional[Dict[str, Any]]:
    candidates = [os.environ.get(ENV_SWEEP_FILE)]
    if sweep_dir:
        candidates.append(str(Path(sweep_dir) / SWEEP_FILE))
    for path in candidates:
        if path and Path(path).is_file():
            return json.loads(Path(path).read_text())
    return None


_RUNNING: List[Dict[str, Any]] = []  # this process's sweep, between its start and its end


def mark_sweep_interrupted(by: str) -> None:
    """End this process's running sweep's parent run as interrupted (Ctrl-C): its finished
    jobs stay; a re-run of the command opens a new sweep that reuses them."""
    for info in _RUNNING:
        try:
            client = store.mlflow_client(info["uri"])
            client.set_tag(info["parent_run_id"], store.TAG_STATUS, store.INTERRUPTED)
            client.set_tag(info["parent_run_id"], "interrupted_by", by)
            client.set_terminated(info["parent_run_id"], status="KILLED")
        except Exception:  # the store may be what went away; the jobs' runs say the rest
            pass
    _RUNNING.clear()


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = store.resolve_uri(config.tracking.uri)
        try:
            store.check_store(uri)
        except store.TrackingError as e:  # one line, before any job starts
            print(f"actloss-bench: error: {e}", file=sys.stderr)
            sys.exit(2)
        experiment_id = store.ensure_experiment(uri, config.tracking.experiment,
                                                   config.tracking.artifact_root)
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        swept = swept_params(config)
        definition = store.definition(store.flatten_params(config), list(swept))
        client = store.mlflow_client(uri)
        parent = client.create_run(experiment_id, run_name=f"sweep {sweep_id}", tags={
            store.TAG_SWEEP: sweep_id,
            store.TAG_EXPERIMENT: config.claim.name or "",
            store.TAG_DEFINITION: definition,
            store.TAG_ROLE: "sweep",
        })
        write_runs_view(client, experiment_id, list(swept) or ["activation"],
                        key_metrics(_task_kinds(config, swept), _claim_metrics(config)))
        info = {"uri": uri, "experiment_id": experiment_id, "sweep_id": sweep_id,
                "parent_run_id": parent.info.run_id, "started": time.time(),
                "definition": definition, "jobs": count_jobs(swept),
                "models_per_job": protocol.models_per_job(config),
                # What makes two launches the same sweep: a re-run may resume into its folder.
                "identity": {"definition": definition, "swept": swept, "seed": config.seed,
                             "seeds": config.seeds, "uri": uri,
                             "experiment": config.tracking.experiment}}
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = sweep_dir / SWEEP_FILE
        try:  # never take over another sweep's folder: its jobs would log into this sweep
            with open(path, "x") as f:
                f.write(json.dumps(info))
        except FileExistsError:
            if _identity(path) != info["identity"]:
                client.set_terminated(parent.info.run_id, status="FAILED")
                print(f"actloss-bench: error: sweep folder {sweep_dir} holds another sweep "
                      f"(other overrides, seeds or definition); pass a fresh "
                      f"hydra.sweep.dir=... or re-run that sweep's own command",
                      file=sys.stderr)
                sys.exit(2)
            # The same sweep again (after a crash, SIGKILL or Ctrl-C): it resumes here. Its
            # finished jobs are found by their keys; the file now names this launch's parent.
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, path)
        os.environ[ENV_SWEEP_FILE] = str(path.resolve())
        self._info = info
        _RUNNING.append(info)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        info = getattr(self, "_info", None)
        if info is None:
            return
        os.environ.pop(ENV_SWEEP_FILE, None)
        _RUNNING.remove(info)
        client = store.mlflow_client(info["uri"])
        try:
            runs = client.search_runs(
                [info["experiment_id"]],
                filter_string=f"tags.{store.TAG_SWEEP} = '{info['sweep_id']}'",
                max_results=50000)
            runs = [r for r in runs if r.info.run_id != info["parent_run_id"]]
            print(sweep_summary(runs, info, config.tracking.experiment))
            if not runs:  # a re-run of a finished sweep: say why the parent has no children
                client.set_tag(info["parent_run_id"], "sweep_note",
                               "no new jobs: every job had finished before (resumed sweep)")
            client.set_terminated(info["parent_run_id"], status="FINISHED")
        except Exception as e:  # e.g. the tracking server went away mid-sweep
            print(f"sweep {info['sweep_id']}: could not read the sweep back from {info['uri']} "
                  f"({type(e).__name__}); finished jobs stay recorded, re-run to complete")


def _task_kinds(config: DictConfig, swept: Dict[str, List[str]]) -> List[str]:
    from actloss_bench.engine.tasks import TASKS

    names = swept.get("task", [config.task.name])
    return list(dict.fromkeys(TASKS[n].kind for n in names if n in TASKS))


def _claim_metrics(config: DictConfig) -> List[str]:
    rules = (config.claim.verdict or {}).get("rules", []) or []
    return [str(r["metric"]) for r in rules if "metric" in r]


def swept_params(config: DictConfig) -> Dict[str, List[str]]:
    """The sweep's axes and their values, as the basic sweeper reads them."""
    return parse_sweep(config.hydra.sweeper.params or {}, config.hydra.overrides.task)


def parse_sweep(params, overrides) -> Dict[str, List[str]]:
    """Each swept key and its values: ``params`` (``hydra.sweeper.params``), then the command
    line's ``overrides``, whose sweeps replace a param of the same key (and whose single
    values end it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    swept: Dict[str, List[str]] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            swept[key] = list(o.sweep_string_iterator())
        else:
            swept.pop(key, None)
    return swept


def count_jobs(swept: Dict[str, List[str]]) -> int:
    return math.prod(len(values) for values in swept.values())


def progress_line(info: Dict[str, Any], job_num: int) -> str:
    """``[done/total jobs, models, elapsed, ~left]`` for a job's line in a sweep."""
    done, total = job_num + 1, info.get("jobs")
    elapsed = time.time() - info["started"]
    per_job = info.get("models_per_job", 1)
    if not total:
        return f"[job {done}, {elapsed:.0f}s elapsed]"
    left = elapsed / done * (total - done)
    return (f"[{done}/{total} jobs, {done * per_job}/{total * per_job} models, "
            f"{elapsed:.0f}s elapsed, ~{left:.0f}s left]")


def sweep_summary(runs, info: Dict[str, Any], experiment: str) -> str:
    """A few lines: jobs by status, the best runs, where to look."""
    by_status: Dict[str, int] = {}
    for r in runs:
        s = r.data.tags.get(store.TAG_STATUS, "running")
        by_status[s] = by_status.get(s, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "no new runs"
    minutes = (time.time() - info["started"]) / 60
    browse = (f"open {info['uri'].rstrip('/')}/#/experiments/{info['experiment_id']}"
              f"?workflowType=machine_learning"
              if info["uri"].startswith(("http://", "https://")) else "browse with `make ui`")
    lines = [f"sweep {info['sweep_id']}: {len(runs)} runs logged ({counts}) in {minutes:.1f} min",
             f"  MLflow experiment '{experiment}' at {info['uri']} (parent run "
             f"{info['parent_run_id']}); {browse}"]
    diagnosed: Dict[str, int] = {}
    for r in runs:
        for d in r.data.tags.get(store.TAG_DIAGNOSIS, "none").split(","):
            if d and d != "none":
                diagnosed[d] = diagnosed.get(d, 0) + 1
    if diagnosed:
        lines.append("  diagnoses: " + ", ".join(f"{d} x{n}" for d, n in sorted(diagnosed.items())))
    return "\n".join(lines)
