"""`make run`'s driver: experiments side by side into one fresh store, nothing lost or
misfiled, a summary of models, time and MLflow's share."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def test_two_experiments_at_once_into_a_fresh_store(tmp_path):
    proc = run_cli("python", "-m", "actloss_bench.cli.run_all", "kl_vs_soft_ce", "shape_mismatch",
                   "--seed", "7", "--results", str(tmp_path), "--extra", "trainer.epochs=2",
                   "seeds=2", "task.n_samples=200", "tune.lr_factors=[1,3]")
    assert "[2/2]" in proc.stdout and "all experiments in" in proc.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    trained = 0
    for name in ("kl_vs_soft_ce", "shape_mismatch"):
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id])
        cells = [r for r in runs if r.data.tags.get("role") == "cell"]
        models = [r for r in runs if "job_key" in r.data.tags]
        assert len(cells) == 2 and all(r.data.tags["status"] == "ok" for r in cells)
        trained += sum(int(r.data.tags["models"]) for r in cells)
        assert sorted(r.data.params["seed"] for r in models) == ["7", "7", "8", "8"]
        assert all(r.data.tags["experiment_name"] == name for r in runs)
    default = client.get_experiment_by_name("Default")
    assert default is None or client.search_runs([default.experiment_id]) == []
    summary = json.loads((tmp_path / "logs" / "run_summary.json").read_text())
    # every job's JSON line counted: tuning and evaluation models of every cell
    assert summary["models"] == trained
    assert 0 < summary["mlflow_share"] < 1 and summary["train_s"] > 0


def test_a_bad_seed_base_is_one_line(tmp_path):
    proc = run_cli("python", "-m", "actloss_bench.cli.run_all", "--seed", "-1", "--results",
                   str(tmp_path), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("run_all: error: --seed -1 is not allowed; it must be an "
                                   "integer >= 0")


def test_ctrl_c_stops_make_run_in_one_line_and_the_same_command_finishes_it(tmp_path):
    cmd = [sys.executable, "-m", "actloss_bench.cli.run_all", "dying_relu", "--results",
           str(tmp_path), "--jobs", "1", "--extra", "trainer.epochs=30", "seeds=2",
           "task.n_samples=600"]
    proc = subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "logs" / "dying_relu.log"
    deadline = time.time() + 120
    while time.time() < deadline and "[ok]" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal running make run
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "run_all: interrupted: 0 of 1 experiments done; finished cells are kept")
    finished = log.read_text().count("[ok]")
    assert 1 <= finished < 12, "the interrupt must land mid-sweep"

    again = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert log.read_text().count("[done]") == finished


def test_real_data_rechecks_run_into_their_own_experiment_and_fill_the_index(tmp_path):
    tiny = ["--extra", "trainer.epochs=2", "seeds=3", "tune.lr_factors=[1,3]"]
    run_cli("python", "-m", "actloss_bench.cli.run_all", "shape_mismatch", "--results",
            str(tmp_path), *tiny)
    proc = run_cli("python", "-m", "actloss_bench.cli.run_all", "--real", "shape_mismatch",
                   "kl_vs_soft_ce", "--results", str(tmp_path), *tiny)
    assert "[2/2]" in proc.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("shape_mismatch_real")
                               .experiment_id])
    models = [r for r in runs if "job_key" in r.data.tags]
    assert models and {r.data.params["task"] for r in models} == {"diabetes"}
    main = client.search_runs([client.get_experiment_by_name("shape_mismatch").experiment_id])
    assert {r.data.params.get("task") for r in main if "job_key" in r.data.tags} == {"regression"}

    out = tmp_path / "report"
    run_cli("actloss-report", "--all", "--uri", f"sqlite:///{tmp_path}/mlflow.db", "--out",
            str(out))
    page = (out / "shape_mismatch" / "README.md").read_text()
    assert "## On real data" in page and "`task=diabetes seeds=20`" in page
    row = next(line for line in (out / "README.md").read_text().splitlines()
               if line.startswith("| [shape_mismatch]"))
    assert row.rstrip(" |").endswith("(diabetes)")  # the real-data column: a verdict word
