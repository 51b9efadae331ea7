"""Hydra callback that gives a multirun one MLflow parent run, created before any job starts.

Creating the database and the experiment here, in the launching process, is what keeps
parallel launchers safe: a fresh SQLite file opened by several processes at once crashes some of
them, and racing ``set_experiment`` calls silently put runs in the Default experiment.
Jobs find the parent through ``<sweep dir>/actloss_sweep.json`` (shared file systems: local,
joblib, submitit) or the ``ACTLOSS_SWEEP_FILE`` variable.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from actloss_bench import logwriter, tracking

SWEEP_FILE = "actloss_sweep.json"
ENV_SWEEP_FILE = "ACTLOSS_SWEEP_FILE"


def read_sweep_info(sweep_dir: Optional[str]) -> Optional[Dict[str, Any]]:
    candidates = [os.environ.get(ENV_SWEEP_FILE)]
    if sweep_dir:
        candidates.append(str(Path(sweep_dir) / SWEEP_FILE))
    for path in candidates:
        if path and Path(path).is_file():
            return json.loads(Path(path).read_text())
    return None


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = tracking.resolve_uri(config.tracking.uri)
        try:
            tracking.check_store(uri)
        except tracking.TrackingError as e:  # one line, before any job starts
            print(f"actloss-bench: error: {e}", file=sys.stderr)
            sys.exit(2)
        if config.hydra.launcher._target_.endswith(".BasicLauncher"):
            # The jobs run in this process and share one log writer: started now, its start-up
            # (MLflow's import, ~2 s) overlaps this process's own, instead of being waited for
            # at the end of a short sweep.
            logwriter.writer_for(uri, warm_plots=config.tracking.log_plots)
        experiment_id = tracking.ensure_experiment(uri, config.tracking.experiment,
                                                   config.tracking.artifact_root)
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        client = tracking._client(uri)
        parent = client.create_run(experiment_id, run_name=f"sweep {sweep_id}", tags={
            tracking.TAG_SWEEP: sweep_id,
            tracking.TAG_EXPERIMENT: config.claim.name or "",
            "sweep_role": "parent",
        })
        # pid: jobs running in this very process (the basic launcher) may leave their writes
        # to the log writer, which on_multirun_end drains; others wait for theirs.
        info = {"uri": uri, "experiment_id": experiment_id, "sweep_id": sweep_id,
                "parent_run_id": parent.info.run_id, "started": time.time(), "pid": os.getpid()}
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = sweep_dir / SWEEP_FILE
        path.write_text(json.dumps(info))
        os.environ[ENV_SWEEP_FILE] = str(path.resolve())
        self._info = info

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        info = getattr(self, "_info", None)
        if info is None:
            return
        os.environ.pop(ENV_SWEEP_FILE, None)
        log_errors = logwriter.drain_all()  # the in-process jobs' runs, written to the end
        client = tracking._client(info["uri"])
        try:
            runs = client.search_runs(
                [info["experiment_id"]],
                filter_string=f"tags.mlflow.parentRunId = '{info['parent_run_id']}'",
                max_results=50000)
            print(sweep_summary(runs, info, config.tracking.experiment))
            if not runs:  # a re-run of a finished sweep: say why the parent has no children
                client.set_tag(info["parent_run_id"], "sweep_note",
                               "no new jobs: every job had finished before (resumed sweep)")
            client.set_terminated(info["parent_run_id"], status="FINISHED")
        except Exception as e:  # e.g. the tracking server went away mid-sweep
            print(f"sweep {info['sweep_id']}: could not read the sweep back from {info['uri']} "
                  f"({type(e).__name__}); finished jobs stay recorded, re-run to complete")
        if log_errors:
            print(f"actloss-bench: error: {len(log_errors)} run(s) could not be logged "
                  f"(first: {log_errors[0]})", file=sys.stderr)
            sys.exit(1)


def sweep_summary(runs, info: Dict[str, Any], experiment: str) -> str:
    """A few lines: jobs by status, the best runs, where to look."""
    by_status: Dict[str, int] = {}
    for r in runs:
        s = r.data.tags.get(tracking.TAG_STATUS, "running")
        by_status[s] = by_status.get(s, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "no new runs"
    minutes = (time.time() - info["started"]) / 60
    browse = (f"open {info['uri']}" if info["uri"].startswith(("http://", "https://"))
              else "browse with `make ui`")
    lines = [f"sweep {info['sweep_id']}: {len(runs)} jobs logged ({counts}) in {minutes:.1f} min",
             f"  MLflow experiment '{experiment}' at {info['uri']} (parent run "
             f"{info['parent_run_id']}); {browse}"]
    diagnosed: Dict[str, int] = {}
    for r in runs:
        for d in r.data.tags.get(tracking.TAG_DIAGNOSIS, "none").split(","):
            if d and d != "none":
                diagnosed[d] = diagnosed.get(d, 0) + 1
    if diagnosed:
        lines.append("  diagnoses: " + ", ".join(f"{d} x{n}" for d, n in sorted(diagnosed.items())))
    return "\n".join(lines)
