"""``make server``: a shared MLflow tracking server for a team, with a SQL backend.

Runs ``mlflow server`` in the foreground on 127.0.0.1, backend in ``results/server/mlflow.db``
(SQLite, created before the server starts) or any SQLAlchemy URI (``--backend-uri``, e.g.
PostgreSQL), artifacts proxied by the server into ``results/server/mlartifacts``. Jobs then use
``tracking.uri=http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from actloss_bench.paths import RESULTS_DIR


def server_command(*, host: str, port: int, backend_uri: str, artifacts: Path,
                   workers: int = 2) -> list:
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    return [mlflow, "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts),
            "--workers", str(workers)]


def prepare_sqlite(path: Path) -> str:
    """Create the SQLite schema once, before the server's workers open the file."""
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{path.resolve()}"
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return uri


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--backend-uri", help="SQLAlchemy URI (default: results/server/mlflow.db;"
                        " with --db postgres: $ACTLOSS_PG_URI)")
    parser.add_argument("--root", type=Path, default=RESULTS_DIR / "server")
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
    cmd = server_command(host=args.host, port=args.port, backend_uri=backend, artifacts=artifacts)
    print("starting:", " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
