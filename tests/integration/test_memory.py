"""A config too big for the machine is refused in one line, before anything is allocated; the
estimate behind it follows the real peak memory of training."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actloss_bench.config.memory import parameter_count
from conftest import ROOT, run_cli

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("overrides", [
    ["model.depth=8", "model.width=1024", "task.n_samples=2000"],  # parameters dominate
    ["task.n_samples=300000", "task.n_features=100", "model.width=16"],  # data dominates
    ["seeds=8", "tune.lr_factors=[0.1,1,10]", "model.width=128", "model.depth=6",
     "task.n_samples=20000"],  # a population's activations dominate
], ids=["parameters", "data", "population"])
def test_the_estimate_follows_the_peak_memory_of_training(overrides):
    proc = subprocess.run([sys.executable, str(HERE / "peak_memory.py"), "task=binary",
                           "trainer.epochs=1", *overrides], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
    sizes = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = sizes["estimate"] / sizes["measured"]
    assert sizes["measured"] > 100e6, "too small to measure against the process's noise"
    assert 0.9 <= ratio <= 2.0, sizes


def test_parameter_count_matches_torch():
    from actloss_bench.engine.model import MLP

    for depth in (0, 1, 3):
        net = MLP(7, 3, depth=depth, width=5, activation="relu", head="linear")
        assert parameter_count(7, 3, depth, 5) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("overrides, names", [
    (["model.depth=2000", "model.width=8192"], "depth 2000 x width 8192"),
    (["task.n_samples=2000000000"], "2000000000 samples"),
    (["seeds=100000", "model.width=512"], "100000 model(s)"),
], ids=["depth-width", "samples", "seeds"])
def test_a_config_too_big_is_refused_in_one_line_before_anything_runs(tmp_path, overrides,
                                                                       names):
    started = time.monotonic()
    proc = run_cli("actloss-bench", *overrides, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                   check=False)
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("actloss-bench: error: config too big for this machine: about ")
    assert names in line and "limit" in line and "(available memory (MemAvailable))" in line
    assert not (tmp_path / "mlflow.db").exists(), "refused before the store was touched"
    assert time.monotonic() - started < 60


def test_a_sweep_is_refused_for_its_largest_job_before_any_job_starts(tmp_path):
    proc = run_cli("actloss-bench", "-m", "model.width=16,20000", "model.depth=1,60",
                   f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                   f"hydra.sweep.dir={tmp_path}/sweep", check=False)
    assert proc.returncode == 2
    assert "depth 60 x width 20000" in proc.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "mlflow.db").exists()


def test_the_limit_can_be_set():
    proc = run_cli("actloss-bench", "trainer.memory_limit_gb=0.001", "trainer.epochs=1",
                   check=False)
    assert proc.returncode == 2
    assert "limit 0.001 GB (trainer.memory_limit_gb)" in proc.stderr


def test_a_real_dataset_is_sized_by_its_own_rows_and_features(make_cfg):
    from actloss_bench.config.memory import task_sizes

    assert task_sizes(make_cfg("task=digits").task) == (1797, 64, 10)
    assert task_sizes(make_cfg("task=binary", "task.n_samples=300").task) == (300, 20, 2)
    proc = run_cli("actloss-bench", "task=digits", "seeds=2000000", check=False)
    assert proc.returncode == 2 and "1797 samples x 64 features" in proc.stderr
