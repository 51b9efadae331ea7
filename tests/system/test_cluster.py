"""Sweeps through a real single-node Slurm cluster (Debian's slurm-wlm and munge), started and
stopped by these tests: every job becomes a finished run in the shared store, and a job
cancelled with scancel is recorded as interrupted and finished by a re-run, once."""

import os
import subprocess
import time

import pytest

from actloss_bench.ops import cluster
from conftest import BIN, ROOT, child_runs, require_system, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    require_system("Slurm (apt-get install -y slurm-wlm munge)", cluster.missing_programs())
    if os.geteuid() != 0:
        pytest.skip("the single-node cluster runs its daemons as root")
    folder = tmp_path_factory.mktemp("slurm")
    env = cluster.start(folder)
    yield env
    cluster.stop(folder)


def _runs(store):
    return child_runs(store)[1]


def _sweep(store, sweep_dir, epochs):
    return ["-m", "hydra/launcher=slurm", f"hydra.launcher.partition={cluster.PARTITION}",
            "activation=relu,tanh", "seed=0,1", "task.n_samples=1000", f"trainer.epochs={epochs}",
            "model.width=16", f"tracking.uri={store}", f"hydra.sweep.dir={sweep_dir}"]


def test_a_sweep_through_slurm_logs_every_job_as_a_finished_run(tmp_path, slurm, store):
    run_cli("actloss-bench", *_sweep(store, tmp_path / "sweep", 3), env=slurm)
    runs = _runs(store)
    assert sorted((r.data.params["activation"], r.data.params["seed"]) for r in runs) == [
        ("relu", "0"), ("relu", "1"), ("tanh", "0"), ("tanh", "1")]
    assert all(r.data.tags["status"] == "ok" and r.info.status == "FINISHED" for r in runs)
    # Each job ran as a Slurm job: submitit keeps one folder per Slurm job id.
    assert len(list((tmp_path / "sweep" / ".submitit").iterdir())) >= 1


def _squeue(env):
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_job_cancelled_with_scancel_is_recorded_and_a_rerun_finishes_it_once(tmp_path, slurm,
                                                                             store):
    proc = subprocess.Popen([str(BIN / "actloss-bench"), *_sweep(store, tmp_path / "a", 400)],
                            cwd=ROOT, env=slurm, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        running = []
        while time.time() < deadline and not running:  # a job that has started its run
            time.sleep(0.5)
            if (tmp_path / "a" / "actloss_sweep.json").exists():
                running = [r for r in _runs(store) if r.data.tags.get("status") == "running"]
        jobs = _squeue(slurm)
        assert running and jobs, "a job must be running to cancel it"
        subprocess.run(["scancel", jobs[0]], env=slurm, check=True)
        proc.communicate(timeout=300)
    finally:
        proc.kill()  # never leave a sweep waiting on Slurm behind
    assert proc.returncode != 0  # the sweep reports the cancelled job
    cancelled = [r for r in _runs(store) if r.data.tags.get("status") == "interrupted"]
    assert len(cancelled) >= 1
    assert all(r.data.tags["interrupted_by"] == "SIGTERM" and r.info.status == "KILLED"
               for r in cancelled)

    ok_before = {r.info.run_id for r in _runs(store) if r.data.tags.get("status") == "ok"}
    run_cli("actloss-bench", *_sweep(store, tmp_path / "b", 400), env=slurm)
    runs = _runs(store)
    live = [r for r in runs if "superseded_by" not in r.data.tags]
    assert sorted(r.data.tags["status"] for r in live) == ["ok"] * 4
    assert len({r.data.tags["job_key"] for r in live}) == 4, "no job twice"
    assert {r.info.run_id for r in cancelled} <= {r.info.run_id for r in runs
                                                  if "superseded_by" in r.data.tags}
    assert ok_before <= {r.info.run_id for r in live}, "finished jobs are not redone"
