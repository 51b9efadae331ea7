"""`make server DB=postgres`: Debian's PostgreSQL under the results folder (loopback only) and
MLflow on it; parallel sweeps from two processes read back over REST; Ctrl-C leaves nothing
running."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from actloss_bench.ops.server import free_port, wait_until_up
from conftest import BIN, ROOT, require_system

pytestmark = pytest.mark.slow


def _postgres_missing():
    return [] if list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or shutil.which(
        "pg_ctl") else ["pg_ctl"]


def _processes_mentioning(text: str):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


def _rest(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def results():
    # PostgreSQL runs as the postgres user: its folder must be one that user can enter
    # (pytest's own tmp_path is private to root).
    folder = Path(tempfile.mkdtemp(prefix="actloss-pg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_make_server_db_postgres_takes_parallel_sweeps_and_stops_cleanly(results):
    require_system("PostgreSQL (apt-get install -y postgresql)", _postgres_missing())
    port = free_port()
    server = subprocess.Popen(["make", "-s", "server", f"RESULTS={results}", f"PORT={port}",
                               "DB=postgres"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server, timeout_s=90)
        data = results / "server" / "postgres"
        assert (data / "PG_VERSION").exists(), "PostgreSQL's data live under RESULTS"
        sweeps = [subprocess.Popen(
            [str(BIN / "actloss-bench"), "-m", f"activation={acts}", "seed=0,1",
             "task.n_samples=300", "trainer.epochs=3", "model.width=16",
             f"tracking.uri={url}", f"tracking.experiment={name}",
             f"hydra.sweep.dir={results}/{name}"], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
            for name, acts in (("pg_a", "relu,tanh"), ("pg_b", "gelu,sigmoid"))]
        for proc in sweeps:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
        for name, acts in (("pg_a", "relu,tanh"), ("pg_b", "gelu,sigmoid")):
            exp = _rest(url, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
            runs = _rest(url, "/api/2.0/mlflow/runs/search",
                         {"experiment_ids": [exp["experiment"]["experiment_id"]],
                          "max_results": 100})["runs"]
            children = [r for r in runs if any(t["key"] == "mlflow.parentRunId"
                                               for t in r["data"]["tags"])]
            activations = sorted(next(p["value"] for p in r["data"]["params"]
                                      if p["key"] == "activation") for r in children)
            assert activations == sorted(acts.split(",") * 2)
            assert all(r["info"]["status"] == "FINISHED" for r in children)
        # Loopback only: PostgreSQL answers on 127.0.0.1, on the port after MLflow's.
        conf = subprocess.run(["cat", str(data / "postmaster.opts")], capture_output=True,
                              text=True).stdout
        assert "listen_addresses=127.0.0.1" in conf
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the terminal running make server
        server.communicate(timeout=60)
    time.sleep(1)
    assert not _processes_mentioning(str(results)), "nothing left running"
    assert not _processes_mentioning(f"--port {port}")
