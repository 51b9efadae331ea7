"""``make server``: a shared MLflow tracking server for a team, with a SQL backend.

Runs ``mlflow server`` in the foreground on 127.0.0.1, backend in ``results/server/mlflow.db``
(SQLite, created before the server starts) or any SQLAlchemy URI (``--backend-uri``, e.g.
PostgreSQL), artifacts proxied by the server into ``results/server/mlartifacts``. Jobs then use
``tracking.uri=http://HOST:PORT``.

MLflow's job execution (a job runner and seven huey consumer processes, used by its GenAI
features, not by tracking) is off unless ``--jobs`` is given: measured here, those processes
took 14 s of CPU in the first 8 s after the server answered, 1-2% of a core when idle after
that, and 2.4 GB of memory in all (the server without them: 2 processes, 0.5 GB), which on a
2-core machine came straight out of the training jobs logging to it.

The server runs MLflow's Flask app under gunicorn, not its default uvicorn: with more than one
worker, uvicorn's listening socket leaves Nagle's algorithm on (Kludex/uvicorn#3149, open), so
every keep-alive response waits for the client's delayed ACK. Measured here with 2 workers: a
health check took 44 ms under uvicorn and 1.5 ms with one uvicorn worker; a 26-value
``log_batch`` (one epoch) 56 ms under uvicorn, 10-13 ms under gunicorn (server CPU ~7-11 ms
either way). A run's end waits for three requests: ~0.13 s more per run under uvicorn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Tuple

from actloss_bench.paths import RESULTS_DIR


def server_command(*, host: str, port: int, backend_uri: str, artifacts: Path,
                   workers: int = 2) -> list:
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    return [mlflow, "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts),
            "--workers", str(workers), "--gunicorn-opts", GUNICORN_OPTS]


# gunicorn's sync workers: a request that takes longer than --timeout kills its worker (an
# artifact upload on a slow link can take a while). No control socket: it is one fixed path in
# the home folder, which a second server on the same machine would fight over.
GUNICORN_OPTS = "--timeout 300 --no-control-socket"


def server_env(*, jobs: bool = False) -> dict:
    """The environment for ``server_command``: MLflow's job execution off unless ``jobs``."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if jobs else "false",
            # MLflow's advice to prefer uvicorn does not hold with several workers (above).
            "PYTHONWARNINGS": "ignore:We recommend using uvicorn:FutureWarning"}


def prepare_sqlite(path: Path) -> str:
    """Create the SQLite schema once, before the server's workers open the file."""
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{path.resolve()}"
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local(root: Path, port: int, *, workers: int = 2, plain_mlflow: bool = False,
                timeout_s: float = 60.0) -> Tuple[subprocess.Popen, str]:
    """A server on 127.0.0.1:``port`` as ``make server`` runs it (SQLite and artifacts under
    ``root``), in its own session (stop it with ``os.killpg(proc.pid, SIGKILL)``); returns
    ``(process, url)`` once it answers ``/health``. ``plain_mlflow``: MLflow's own web server
    settings instead (uvicorn, 4 workers), for comparison. For tests and benchmarks."""
    backend = prepare_sqlite(root / "mlflow.db")
    (root / "mlartifacts").mkdir(parents=True, exist_ok=True)
    cmd = server_command(host="127.0.0.1", port=port, backend_uri=backend,
                         artifacts=root / "mlartifacts", workers=workers)
    if plain_mlflow:
        cmd = cmd[:cmd.index("--workers")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=server_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.25)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"tracking server did not answer {url}/health within {timeout_s:.0f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--backend-uri", help="SQLAlchemy URI (default: results/server/mlflow.db;"
                        " with --db postgres: $ACTLOSS_PG_URI)")
    parser.add_argument("--root", type=Path, default=RESULTS_DIR / "server")
    parser.add_argument("--workers", type=int, default=2,
                        help="server processes (gunicorn workers), default 2")
    parser.add_argument("--jobs", action="store_true",
                        help="keep MLflow's job execution (huey workers; not used by tracking)")
    args = parser.parse_args(argv)
    if args.backend_uri:
        backend = args.backend_uri
    elif args.db == "postgres":
        backend = os.environ.get("ACTLOSS_PG_URI")
        if not backend:
            sys.exit("actloss-server: error: --db postgres needs ACTLOSS_PG_URI="
                     "postgresql://user:pass@host/db (and psycopg2 installed)")
    else:
        backend = prepare_sqlite(args.root / "mlflow.db")
    artifacts = args.root / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    if args.workers < 1:
        sys.exit(f"actloss-server: error: --workers must be at least 1 (got {args.workers})")
    cmd = server_command(host=args.host, port=args.port, backend_uri=backend, artifacts=artifacts,
                         workers=args.workers)
    print("starting:", " ".join(cmd), flush=True)
    os.execve(cmd[0], cmd, server_env(jobs=args.jobs))


if __name__ == "__main__":
    main()
