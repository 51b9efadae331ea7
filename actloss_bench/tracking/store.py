"""Everything that talks to MLflow: stores, experiments, runs, batched logging, resume keys.

One ``log_batch`` request per epoch at most (over HTTP each request costs tens of
milliseconds; ``log_metric`` per value would dominate a tiny run). The SQLite database and the
experiment are created once, before parallel jobs start (see :mod:`actloss_bench.tracking.sweep`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

# Tags written on every run (public names: docs/tracking.md).
TAG_STATUS, TAG_COMBO, TAG_DIAGNOSIS = "status", "combo", "diagnosis"
TAG_EXPERIMENT, TAG_SWEEP, TAG_JOB_KEY = "experiment_name", "sweep_id", "job_key"
# A population job's cell-level run: role=cell, its job's key, the sweep definition it ran under,
# and the later sweeps that found it finished and reused it.
TAG_ROLE, TAG_CELL_KEY, TAG_DEFINITION = "role", "cell_key", "definition"
TAG_REUSED = "reused_by_sweeps"
FINISHED_STATUSES = ("ok", "diverged", "skipped")  # deterministic outcomes: never redone
INTERRUPTED = "interrupted"  # SIGINT or SIGTERM (Ctrl-C, scancel): redone by a re-run


# Set before MLflow is first imported. Over HTTP, MLflow prints two "View run" lines for every
# finished run (and reads the run back to do it): thousands per sweep; the sweep's summary says
# where to look instead. MLflow's own INFO lines (two per new store) show only when asked for:
# MLFLOW_LOGGING_LEVEL=INFO, or run_all --verbose.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


class TrackingError(RuntimeError):
    """The tracking store cannot be used (one line, before any training)."""


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient  # mlflow import costs ~1 s: only when tracking


    return MlflowClient(tracking_uri=uri)


def resolve_uri(uri: str) -> str:
    """Make a relative ``sqlite:///`` path absolute, so every worker opens the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def sqlite_path(uri: str) -> Optional[Path]:
    prefix = "sqlite:///"
    return Path(resolve_uri(uri)[len(prefix):]) if uri.startswith(prefix) else None


def default_artifact_root(uri: str) -> Optional[str]:
    """``mlartifacts/`` beside a SQLite file; None (the server decides) otherwise."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts").as_uri() if path is not None else None


URI_SCHEMES = ("sqlite:///", "http://", "https://", "postgresql", "mysql", "mssql", "file:")


def check_store(uri: str, timeout: float = 3.0) -> None:
    """Fail in one line when the URI is not a tracking store, the store is unreachable, or
    its folder is not writable."""
    if not uri.startswith(URI_SCHEMES):
        raise TrackingError(f"tracking.uri={uri} is not a tracking store; use "
                            f"sqlite:///path/mlflow.db, http://host:port or a database URL "
                            f"(postgresql://..., mysql://...)")
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
                if r.status != 200:
                    raise TrackingError(f"tracking server {uri} answered HTTP {r.status}")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"tracking server {uri} is unreachable ({reason})") from None
        return
    path = sqlite_path(uri)
    if path is None:
        return
    blocking = next((p for p in [path.parent, *path.parent.parents]
                     if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise TrackingError(f"cannot create results folder {path.parent}: {blocking} is a "
                            f"file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingError(f"cannot create results folder {path.parent} ({e.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise TrackingError(f"results folder {path.parent} is not writable")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise TrackingError(f"{path} is not a SQLite database (corrupt or wrong file)")
    # Create and migrate the schema one process at a time: two sweeps started together on a
    # fresh file otherwise both run MLflow's migrations, and one of them crashes.
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mlflow_client(uri).search_experiments(max_results=1)


def ensure_experiment(uri: str, name: str, artifact_root: Optional[str] = None) -> str:
    """Experiment id of ``name``, creating the database and the experiment if needed."""
    client = mlflow_client(uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    root = artifact_root or default_artifact_root(uri)
    location = f"{root.rstrip('/')}/{name}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process: use it
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def flatten_params(cfg: DictConfig) -> Dict[str, str]:
    """The resolved config as MLflow params: ``activation``, ``task``, ``model.depth``, ...

    A group's ``name`` becomes the group's own key (``loss: focal``); an experiment's
    bookkeeping (``claim``, ``profiles``, ``arms``: the chosen arm's values are in the params)
    and ``hydra`` are left out.
    """
    # Without the hydra node, whose run-time values a sweep's launching process lacks.
    container = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    out: Dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                key = f"{prefix}.{k}" if prefix else str(k)
                if k == "name" and prefix:
                    out[prefix] = str(v)
                else:
                    walk(key, v)
        else:
            out[prefix] = str(node)

    for k, v in container.items():
        if k not in ("claim", "profiles", "arms", "hydra"):  # an experiment's bookkeeping
            walk(k, v)
    return out


def params_key(params: Dict[str, str]) -> str:
    """A job's ``job_key`` (or a population's ``cell_key``): the hash of its flattened config
    (``flatten_params``) minus tracking settings. A model of a population gets the key of its
    one-model run."""
    kept = {k: v for k, v in params.items() if not k.startswith("tracking.")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def definition(params: Dict[str, str], swept) -> str:
    """A sweep's definition: the hash of its flattened config minus seeds, tracking settings
    and the swept keys, so that runs of another definition are never pooled into a verdict."""
    kept = {k: v for k, v in params.items()
            if k not in ("seed", "seeds") and not k.startswith("tracking.") and k not in swept}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def log_finished_run(uri: str, experiment_id: str, *, run_name: str, params: Dict[str, str],
                     metrics: Dict[str, float], step: int, tags: Dict[str, Any], status: str,
                     parent_run_id: Optional[str] = None,
                     history: Iterable[Tuple[int, Dict[str, float]]] = ()) -> str:
    """A run whose results are all known (a model of a population): its params, per-epoch
    ``history`` ((epoch, values) pairs), final ``metrics`` and tags in a few requests (MLflow's
    limit is 1000 metrics per request), the ``status`` tag in the last write, so an
    interrupted one never counts as finished."""
    from mlflow.entities import Param

    client = mlflow_client(uri)
    start_tags = {**tags, TAG_STATUS: "running"}
    if parent_run_id:
        start_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={k: str(v) for k, v in start_tags.items()})
    logger = RunLogger(client, run.info.run_id, flush_every_s=math.inf)  # one send at the end
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    for epoch, values in history:
        logger.log_epoch(epoch, values)
    logger.finish(status=status, metrics=metrics, step=step)
    return run.info.run_id


def _metrics(values: Dict[str, float], step: int) -> List[Any]:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    return [Metric(k, float(v), ts, step) for k, v in values.items()]


def _tags(tags: Dict[str, Any]) -> List[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in tags.items()]


class RunLogger:
    """One MLflow run: params and tags at start, buffered epoch metrics, artifacts at the end.

    Epoch metrics are buffered and sent as one ``log_batch`` at most every ``flush_every_s``
    seconds and at the end: a request costs ~10 ms in SQLite and tens of ms over HTTP, per
    epoch that would be a fifth of a tiny run.
    """

    def __init__(self, client: Any, run_id: str, flush_every_s: float = 2.0):
        self.client = client
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self._pending: List[Any] = []
        self._last_flush = time.monotonic()

    @classmethod
    def start(cls, uri: str, experiment_id: str, *, run_name: str, params: Dict[str, str],
              tags: Dict[str, Any], parent_run_id: Optional[str] = None,
              flush_every_s: float = 2.0) -> "RunLogger":
        """Create the run with its tags and params."""
        from mlflow.entities import Param

        client = mlflow_client(uri)
        tags = dict(tags)
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, run_name=run_name,
                                tags={k: str(v) for k, v in tags.items()})
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        return cls(client, run.info.run_id, flush_every_s)

    def log_epoch(self, step: int, values: Dict[str, float]) -> None:
        self._pending.extend(_metrics(values, step))
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._send(self._pending)
        self._pending = []
        self._last_flush = time.monotonic()

    def _send(self, metrics: List[Any], tags: Optional[List[Any]] = None) -> None:
        """``log_batch`` in chunks of MLflow's limit of 1000 metrics; the tags go with the
        last chunk."""
        chunks = [metrics[i:i + 1000] for i in range(0, len(metrics), 1000)] or [[]]
        for chunk in chunks[:-1]:
            self.client.log_batch(self.run_id, metrics=chunk)
        self.client.log_batch(self.run_id, metrics=chunks[-1], tags=tags or [])

    def log_artifacts(self, artifacts: Dict[str, Any]) -> None:
        """Write each ``{relative path: writer}`` (``writer(path)`` creates the file) into a
        temporary folder and upload the folder."""
        with tempfile.TemporaryDirectory() as tmp:
            for rel, writer in artifacts.items():
                target = Path(tmp) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                writer(target)
            self.client.log_artifacts(self.run_id, tmp)

    def finish(self, *, status: str, metrics: Optional[Dict[str, float]] = None,
               tags: Optional[Dict[str, Any]] = None, artifacts: Optional[Dict[str, Any]] = None,
               step: int = 0) -> None:
        """Artifacts, then final metrics and tags in one request, then the terminal state.

        The ``status`` tag is written after the artifacts, so a job killed half-way through
        finishing is never mistaken for a finished one by a resumed sweep.
        """
        if artifacts:
            self.log_artifacts(artifacts)
        self._send(self._pending + _metrics(metrics or {}, step),
                   tags=_tags({TAG_STATUS: status, **(tags or {})}))
        self._pending = []
        state = {"failed": "FAILED", INTERRUPTED: "KILLED"}.get(status, "FINISHED")
        self.client.set_terminated(self.run_id, status=state)


def find_runs_by_key(uri: str, experiment_id: str, key: str, tag: str = TAG_JOB_KEY):
    """Runs of this experiment carrying ``tag=key``, newest first."""
    client = mlflow_client(uri)
    return list(client.search_runs([experiment_id], filter_string=f"tags.{tag} = '{key}'",
                                   order_by=["attributes.start_time DESC"], max_results=50000))


def append_tag(uri: str, run, key: str, value: str) -> None:
    """Add ``value`` to the comma-separated list in tag ``key`` of ``run``."""
    old = run.data.tags.get(key, "")
    mlflow_client(uri).set_tag(run.info.run_id, key, ",".join(filter(None, [old, value])))


def is_finished(run) -> bool:
    return run.data.tags.get(TAG_STATUS) in FINISHED_STATUSES


def supersede(uri: str, earlier: Iterable[Tuple[str, str]], new_run_id: str) -> None:
    """Mark unfinished or failed earlier attempts ``(run_id, state)`` of a job as superseded
    (kept, not deleted); one still RUNNING (its process died) becomes KILLED."""
    client = mlflow_client(uri)
    for run_id, state in earlier:
        client.set_tag(run_id, "superseded_by", new_run_id)
        if state == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
