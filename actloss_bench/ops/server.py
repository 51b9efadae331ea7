"""``make server``: a shared MLflow tracking server for a team, with a SQL backend.

Runs ``mlflow server`` in the foreground on 127.0.0.1, backend in ``results/server/mlflow.db``
(SQLite, created before the server starts), or with ``--db postgres`` Debian's PostgreSQL with
its data in ``results/server/postgres/`` (loopback only, started before MLflow and stopped after
it), or any SQLAlchemy URI (``--backend-uri``); artifacts proxied by the server into
``results/server/mlartifacts``. Jobs then use ``tracking.uri=http://HOST:PORT``. Ctrl-C or
SIGTERM stops MLflow's processes and PostgreSQL: nothing is left running.

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
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Tuple

from actloss_bench.config.paths import RESULTS_DIR


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
    from actloss_bench.tracking.store import mlflow_client

    path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{path.resolve()}"
    mlflow_client(uri).search_experiments(max_results=1)
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
    try:
        wait_until_up(url, proc, timeout_s)
    except RuntimeError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, url


def wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Return once ``url/health`` answers; RuntimeError if ``proc`` ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server at {url} exited ({proc.returncode})") from None
            time.sleep(0.25)
    raise RuntimeError(f"tracking server did not answer {url}/health within {timeout_s:.0f} s")


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them out of PATH, under
    /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise ServerError(f"PostgreSQL's {name} is not installed; on Debian: "
                          "apt-get install -y postgresql")
    return found


class ServerError(RuntimeError):
    """A server that cannot start, in one line."""


PG_USER, PG_DB = "actloss", "mlflow"  # the role initdb creates, and MLflow's database


def _as_postgres(cmd: list) -> list:
    """PostgreSQL refuses to run as root: as root, run its programs as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _check_reachable_by_postgres(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)],
                           capture_output=True)
    if probe.returncode != 0:
        raise ServerError(f"PostgreSQL runs as user postgres, which cannot enter {folder}; "
                          "choose RESULTS= under a folder that others may enter (chmod o+x)")


def start_postgres(data: Path, port: int, timeout_s: float = 60.0) -> str:
    """Debian's PostgreSQL with its data in ``data`` (created on first use), on 127.0.0.1:``port``
    only, its socket inside ``data``; returns the SQLAlchemy URI of its ``mlflow`` database.
    Trust authentication is safe here only because nothing but loopback can connect."""
    data = data.resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    _check_reachable_by_postgres(data.parent)
    if not (data / "PG_VERSION").exists():
        data.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", PG_USER,
                                     "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    started = subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "start", "-D", str(data), "-w",
                                           "-t", str(int(timeout_s)), "-l",
                                           str(data / "server.log"), "-o", options]),
                             capture_output=True, text=True)
    if started.returncode != 0:
        raise ServerError(f"PostgreSQL did not start on 127.0.0.1:{port} "
                          f"(see {data / 'server.log'}): {started.stderr.strip()[-300:]}")
    exists = subprocess.run(_as_postgres([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port),
                                          "-U", PG_USER, "-d", "postgres", "-tAc",
                                          f"SELECT 1 FROM pg_database WHERE datname='{PG_DB}'"]),
                            capture_output=True, text=True, check=True)
    if exists.stdout.strip() != "1":
        subprocess.run(_as_postgres([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port),
                                     "-U", PG_USER, PG_DB]), check=True, capture_output=True)
    return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/{PG_DB}"


def stop_postgres(data: Path) -> None:
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "stop", "-D", str(data.resolve()), "-m",
                                 "fast", "-w"]), capture_output=True)


def serve(cmd: list, env: dict, on_stop=None) -> int:
    """Run the server in its own process group until it ends or this process gets SIGINT or
    SIGTERM; then stop the group and run ``on_stop``, so nothing is left running."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = proc.wait(timeout=10 if stopping else None)
                break
            except subprocess.TimeoutExpired:  # gunicorn did not stop within 10 s
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        try:  # workers the arbiter left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if on_stop is not None:
            on_stop()
    return 0 if stopping else code


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.ops.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-port", type=int,
                        help="PostgreSQL's port with --db postgres (default: --port + 1)")
    parser.add_argument("--backend-uri", help="SQLAlchemy URI of a database of your own "
                        "(default: ROOT/mlflow.db, or with --db postgres ROOT/postgres/)")
    parser.add_argument("--root", type=Path, default=RESULTS_DIR / "server")
    parser.add_argument("--workers", type=int, default=2,
                        help="server processes (gunicorn workers), default 2")
    parser.add_argument("--jobs", action="store_true",
                        help="keep MLflow's job execution (huey workers; not used by tracking)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        sys.exit(f"actloss-server: error: --workers must be at least 1 (got {args.workers})")
    on_stop = None
    try:
        if args.backend_uri:
            backend = args.backend_uri
        elif args.db == "postgres":
            data = args.root / "postgres"
            backend = start_postgres(data, args.pg_port or args.port + 1)
            on_stop = partial(stop_postgres, data)
            print(f"PostgreSQL: {backend} (data in {data})", flush=True)
        else:
            backend = prepare_sqlite(args.root / "mlflow.db")
    except ServerError as e:
        sys.exit(f"actloss-server: error: {e}")
    artifacts = args.root / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = server_command(host=args.host, port=args.port, backend_uri=backend, artifacts=artifacts,
                         workers=args.workers)
    print("starting:", " ".join(cmd), flush=True)
    print(f"open http://{args.host}:{args.port}/#/experiments?workflowType=machine_learning; "
          "Ctrl-C stops it", flush=True)
    sys.exit(serve(cmd, server_env(jobs=args.jobs), on_stop))


if __name__ == "__main__":
    main()
