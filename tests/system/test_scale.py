"""Scaling out and surviving faults: launchers, a real tracking server, resumable sweeps."""

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from actloss_bench.ops.server import free_port, start_local
from conftest import BIN, ROOT, child_runs, run_cli

pytestmark = pytest.mark.slow


def test_submitit_local_launcher(tmp_path, store, small):
    run_cli("actloss-bench", "-m", "hydra/launcher=local_procs", "activation=relu,tanh",
            *small, f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/sweep")
    _, runs = child_runs(store)
    assert sorted(r.data.params["activation"] for r in runs) == ["relu", "tanh"]
    assert all(r.data.tags["status"] == "ok" for r in runs)


def test_ray_launcher_on_a_local_ray_cluster(tmp_path, store, small):
    """hydra-ray-launcher starts a local Ray cluster (ray.init) and runs each job as a task."""
    run_cli("actloss-bench", "-m", "hydra/launcher=ray", "activation=relu,tanh", *small,
            f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/sweep",
            env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    _, runs = child_runs(store)
    assert sorted(r.data.params["activation"] for r in runs) == ["relu", "tanh"]
    assert all(r.data.tags["status"] == "ok" for r in runs)


def test_same_numbers_across_launchers(tmp_path, store, small):
    args = ["seed=5", "activation=gelu", *small, f"tracking.uri={store}"]
    run_cli("actloss-bench", "-m", *args, "tracking.experiment=basic",
            f"hydra.sweep.dir={tmp_path}/a")
    run_cli("actloss-bench", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *args,
            "tracking.experiment=joblib", f"hydra.sweep.dir={tmp_path}/b")
    client, (a,) = child_runs(store, "basic")
    _, (b,) = child_runs(store, "joblib")
    assert a.data.metrics == b.data.metrics
    for key in ("val/loss", "grad_norm/layer_0"):
        assert ([m.value for m in client.get_metric_history(a.info.run_id, key)] ==
                [m.value for m in client.get_metric_history(b.info.run_id, key)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, store):
    # 20 samples with a 5% minority: one minority sample, which a stratified split cannot
    # divide (scikit-learn raises): a job that fails at run time, beside jobs that run
    proc = run_cli("actloss-bench", "-m", "task=binary,imbalanced", "seed=0,1",
                   "task.n_samples=20", "task.minority_fraction=0.05", "task.val_fraction=0.45",
                   "task.test_fraction=0.45", "trainer.epochs=1",
                   f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/s")
    client, runs = child_runs(store)
    by_task = {}
    for r in runs:
        by_task.setdefault(r.data.params["task"], []).append(r.data.tags["status"])
    assert by_task == {"binary": ["ok", "ok"], "imbalanced": ["failed", "failed"]}
    assert "2 failed, 2 ok" in proc.stdout
    failed = next(r for r in runs if r.data.tags["status"] == "failed")
    # config.yaml is logged when the run starts, so a failed run has it too
    assert {f.path for f in client.list_artifacts(failed.info.run_id)} == {"config.yaml",
                                                                         "traceback.txt"}


def _sweep_cmd(store, sweep_dir):
    return [str(BIN / "actloss-bench"), "-m", "activation=relu,tanh,gelu", "seed=0,1",
            "task.n_samples=1500", "trainer.epochs=25", f"tracking.uri={store}",
            f"hydra.sweep.dir={sweep_dir}"]


def _sweep_with_two_jobs_done(store, sweep_dir, **popen):
    """Start ``_sweep_cmd`` in its own session; return once two of its jobs have finished."""
    proc = subprocess.Popen(_sweep_cmd(store, sweep_dir), cwd=ROOT, start_new_session=True,
                            **popen)
    deadline = time.time() + 120
    # Read the store only once the sweep has created it (its parent run file exists): a second
    # process migrating a fresh SQLite file at the same time is exactly what breaks it.
    while time.time() < deadline and not (sweep_dir / "actloss_sweep.json").exists():
        time.sleep(0.2)
    done = []
    while time.time() < deadline and len(done) < 2:
        time.sleep(0.3)
        done = [r for r in child_runs(store)[1] if r.data.tags.get("status") == "ok"]
    return proc


def _rerun_finishes_once(store, sweep_dir, finished_before):
    """A re-run redoes nothing finished and leaves every job once, finished."""
    second = run_cli(*_sweep_cmd(store, sweep_dir))
    assert second.stdout.count("[done]") == len(finished_before)
    _, after = child_runs(store)
    live = [r for r in after if "superseded_by" not in r.data.tags]
    assert sorted(r.data.tags["status"] for r in live) == ["ok"] * 6
    assert len({r.data.tags["job_key"] for r in live}) == 6, "no job twice"
    return [r for r in after if "superseded_by" in r.data.tags]


def test_killed_sweep_resumes_into_its_own_pinned_folder(tmp_path, store):
    """SIGKILL, then the same command with the same hydra.sweep.dir: it resumes there, and
    ends with exactly one finished run per job; another sweep into that folder is refused."""
    pinned = tmp_path / "pinned"
    proc = _sweep_with_two_jobs_done(store, pinned, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _, before = child_runs(store)
    finished_before = {r.data.tags["job_key"] for r in before if r.data.tags["status"] == "ok"}
    assert 2 <= len(finished_before) < 6, "the kill must land mid-sweep"
    superseded = _rerun_finishes_once(store, pinned, finished_before)
    assert all(r.data.tags["status"] == "running" for r in superseded)
    other = run_cli("actloss-bench", "-m", "activation=relu,sigmoid", f"tracking.uri={store}",
                    f"hydra.sweep.dir={pinned}", check=False)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].startswith(
        f"actloss-bench: error: sweep folder {pinned} holds another sweep")


def test_ctrl_c_mid_sweep_stops_cleanly_and_a_rerun_finishes_it_once(tmp_path, store):
    proc = _sweep_with_two_jobs_done(store, tmp_path / "first", text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "actloss-bench: interrupted (SIGINT): finished jobs are kept")
    client, before = child_runs(store)
    finished_before = {r.data.tags["job_key"] for r in before if r.data.tags["status"] == "ok"}
    assert 2 <= len(finished_before) < 6, "the interrupt must land mid-sweep"
    # A job caught mid-training says so; none is left looking as if it still ran.
    assert {r.data.tags["status"] for r in before} <= {"ok", "interrupted"}
    for r in before:
        if r.data.tags["status"] == "interrupted":
            assert r.info.status == "KILLED" and r.data.tags["interrupted_by"] == "SIGINT"
    parent = client.get_run(before[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "interrupted"
    _rerun_finishes_once(store, tmp_path / "second", finished_before)


def _two_sweeps_at_once(tmp_path, uri):
    """Two sweeps started together into one store, each into its own experiment: every run
    lands in its own sweep's experiment under its own parent, none in Default, none lost."""
    arms = {"first": "relu,tanh", "second": "gelu,sigmoid"}
    procs = {name: subprocess.Popen(
        [str(BIN / "actloss-bench"), "-m", f"activation={acts}", "seed=0,1",
         "task.n_samples=300", "trainer.epochs=3", "model.width=16", f"tracking.uri={uri}",
         f"tracking.experiment={name}", f"hydra.sweep.dir={tmp_path}/{name}"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, acts in arms.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    client = MlflowClient(tracking_uri=uri)
    for name, acts in arms.items():
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id], max_results=100)
        parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert len(parents) == 1
        assert sorted(r.data.params["activation"] for r in children) == sorted(
            acts.split(",") * 2)
        assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
        assert all(r.data.tags["status"] == "ok" for r in children)
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])


def test_two_sweeps_at_once_into_one_fresh_sqlite_store(tmp_path, store):
    _two_sweeps_at_once(tmp_path, store)


def test_two_sweeps_at_once_into_one_server(tmp_path, server):
    _two_sweeps_at_once(tmp_path, server)


def test_unwritable_results_folder_and_corrupt_database(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the results folder should be")
    proc = run_cli("actloss-bench", f"tracking.uri=sqlite:///{blocker}/mlflow.db", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("actloss-bench: error: cannot create results folder")
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"\x00garbage" * 100)
    proc = run_cli("actloss-bench", "-m", "seed=0,1", f"tracking.uri=sqlite:///{corrupt}",
                   f"hydra.sweep.dir={tmp_path}/s", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"actloss-bench: error: {corrupt} is not a SQLite database "
                                   "(corrupt or wrong file)")


def _rest(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw.startswith(b"{") else raw.decode()


@pytest.fixture
def server(tmp_path):
    proc, url = start_local(tmp_path / "server", free_port(), workers=1)
    yield url
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _session_commands(sid: int):
    """Command lines of the processes in session ``sid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # fields after the name: state ppid pgrp session ...
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            pass  # a process that ended while we read
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_server_runs_without_mlflow_job_workers_and_answers_without_delayed_ack(tmp_path):
    """MLflow's job runner and huey consumers (GenAI jobs, not tracking) are left off: they
    took 14 s of CPU at start-up here, competing with the jobs logging to the server. Served
    as `make server` serves it (2 workers), a request is not held back by Nagle's algorithm
    waiting for a delayed ACK (~44 ms per request under uvicorn with 2 workers, ~1.5 ms here)."""
    proc, url = start_local(tmp_path / "server", free_port())
    try:
        commands = _session_commands(proc.pid)
        assert sum("gunicorn" in c for c in commands) >= 3, commands  # arbiter + 2 workers
        assert not any("huey" in c or "_job_runner" in c for c in commands), commands
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        seconds = []
        for _ in range(15):
            started = time.perf_counter()
            conn.request("GET", "/health")
            assert conn.getresponse().read() == b"OK"
            seconds.append(time.perf_counter() - started)
        assert sorted(seconds)[7] < 0.03, seconds  # the median, with room for a busy machine
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sweep_against_a_real_tracking_server_read_back_over_rest(tmp_path, server, small):
    proc = run_cli("actloss-bench", "-m", "activation=relu,sigmoid", *small,
                   "tracking.log_plots=true", f"tracking.uri={server}",
                   f"hydra.sweep.dir={tmp_path}/s")
    # No "View run" pair of lines per run (thousands in a population sweep): the summary
    # says where to look.
    assert "View run" not in proc.stdout + proc.stderr
    assert f"open {server}" in proc.stdout
    exp = _rest(server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=actloss_bench")
    exp_id = exp["experiment"]["experiment_id"]
    runs = _rest(server, "/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [exp_id], "max_results": 100})["runs"]
    children = [r for r in runs if any(t["key"] == "mlflow.parentRunId"
                                       for t in r["data"].get("tags", []))]
    assert len(children) == 2
    run_id = children[0]["info"]["run_id"]
    history = _rest(server, "/api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(
        {"run_id": run_id, "metric_key": "val/accuracy"}))["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2, 3]
    files = {f["path"] for f in _rest(server, "/api/2.0/mlflow/artifacts/list?run_id=" +
                                      run_id)["files"]}
    assert {"config.yaml", "predictions.csv", "plots"} <= files
    csv = _rest(server, f"/get-artifact?path=predictions.csv&run_uuid={run_id}")
    assert csv.splitlines()[0].startswith("target,prediction,prob_0,prob_1")


def test_server_gone_mid_sweep_keeps_finished_jobs(tmp_path, small):
    port = free_port()
    root = tmp_path / "server"
    proc, url = start_local(root, port, workers=1)
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    sweep = subprocess.Popen([str(BIN / "actloss-bench"), "-m", "seed=0,1,2,3,4,5",
                              "task.n_samples=1500", "trainer.epochs=25", f"tracking.uri={url}",
                              f"hydra.sweep.dir={tmp_path}/s"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    deadline = time.time() + 120
    finished = []
    while time.time() < deadline and len(finished) < 2:
        time.sleep(0.5)
        finished = [r for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()]) if
            r.data.tags.get("status") == "ok"]
    os.killpg(proc.pid, signal.SIGKILL)  # the server goes away mid-sweep
    proc.wait()
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode != 0
    kept = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.data.tags.get("status") == "ok"]
    assert len(kept) >= 2 and {r.info.run_id for r in finished} <= {r.info.run_id for r in kept}
    proc, url2 = start_local(root, port, workers=1)  # back up: a re-run completes the sweep
    try:
        rerun = run_cli("actloss-bench", "-m", "seed=0,1,2,3,4,5", "task.n_samples=1500",
                        "trainer.epochs=25", f"tracking.uri={url2}",
                        f"hydra.sweep.dir={tmp_path}/s2", env=env)
        assert rerun.stdout.count("[done]") == len(kept)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
