"""The speed benchmark's harness (benchmarks/workloads.py): its comparisons are fair, and its
modes run end to end. Timings themselves are `make bench`'s business, not a test's."""

import json
import math
import subprocess
import sys
import time

import pytest
import torch

from actloss_bench import model, training
from actloss_bench.tasks import make_dataset
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import workloads  # noqa: E402

TINY = ["task.n_samples=500", "trainer.epochs=2", "trainer.threads=1"]


def test_naive_loop_and_bench_train_the_same_model_for_the_same_steps(monkeypatch):
    """The ratio compares loops, not workloads: same initial weights, same data, same number
    of optimiser steps (a partial last batch included)."""
    cfg = workloads.config(TINY)
    data = make_dataset(cfg.task, cfg.seed)
    initial = []
    build = model.build_model

    def recording(*args, **kwargs):
        m = build(*args, **kwargs)
        initial.append({k: v.clone() for k, v in m.state_dict().items()})
        return m

    monkeypatch.setattr(model, "build_model", recording)  # the naive loop imports it late
    monkeypatch.setattr(training, "build_model", recording)
    naive_steps = workloads.naive(cfg, data)
    _, bench_steps = workloads.bench(cfg, data)

    per_epoch = math.ceil(len(data.y_train) / cfg.trainer.batch_size)
    assert len(data.y_train) % cfg.trainer.batch_size != 0  # the partial batch is exercised
    assert naive_steps == bench_steps == cfg.trainer.epochs * per_epoch
    assert len(initial) == 2
    assert initial[0].keys() == initial[1].keys()
    assert all(torch.equal(initial[0][k], initial[1][k]) for k in initial[0])


def _workload(*args):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "workloads.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", ["naive_train", "bench_logged"])
def test_a_variant_reports_its_time_steps_and_memory(tmp_path, variant):
    out = _workload(variant, f"sqlite:///{tmp_path}/mlflow.db", "2", "task.n_samples=500")
    assert out["variant"] == variant
    assert out["seconds"] > 0 and out["peak_rss_mb"] >= out["rss_before_mb"] > 0
    assert out["steps"] == 2 * math.ceil(300 / 128)  # 60% of 500 samples in batches of 128
    assert (out["end_wait_s"] > 0) == (variant == "bench_logged")


def test_paired_rounds_alternate_and_time_the_logged_side_until_written(tmp_path):
    out = _workload("pair:bench_train:bench_logged_x2:2", f"sqlite:///{tmp_path}/mlflow.db",
                    "2", "task.n_samples=500")
    assert len(out["rounds"]) == 2
    for r in out["rounds"]:
        assert r["a_s"] > 0 and r["b_s"] > r["b_end_wait_s"] > 0
    # Every logged training reached the store, finished (2 per round, plus the warm-up's).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert len(runs) == 2 * 2 + 2
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["status"] for r in runs} == {"ok"}


def test_cpu_seconds_counts_a_busy_process_and_its_group():
    neighbour = workloads.busy_neighbour()
    try:
        start = workloads.cpu_seconds([neighbour.pid])
        deadline = time.monotonic() + 10
        while workloads.cpu_seconds([neighbour.pid]) - start < 0.2:
            assert time.monotonic() < deadline, "a spinning process got no CPU"
        # Its own session, as `make server`'s gunicorn runs: the group is found by its leader.
        leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                  start_new_session=True)
        try:
            assert workloads.group_pids(leader.pid) == [leader.pid]
        finally:
            leader.kill()
            leader.wait()
    finally:
        neighbour.kill()
        neighbour.wait()
    assert workloads.cpu_seconds([neighbour.pid]) == 0  # gone: counted as nothing, no error


def test_a_busy_neighbour_pair_runs_and_stops_its_neighbour(tmp_path):
    out = _workload("pair:bench_train:bench_train_beside_busy:2", "-", "2", "task.n_samples=500")
    assert len(out["rounds"]) == 2 and all(r["b_s"] > 0 for r in out["rounds"])
    left = subprocess.run(["pgrep", "-f", "while True: pass"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_a_logged_variant_reports_its_writers_cpu(tmp_path):
    out = _workload("bench_logged_x2", f"sqlite:///{tmp_path}/mlflow.db", "5",
                    "task.n_samples=500")
    assert out["logging_cpu_s"] > 0  # two runs' inserts, config and predictions uploads
