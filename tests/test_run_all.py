"""`make run`'s driver: experiments side by side into one fresh store, nothing lost or
misfiled, a summary of models, time and MLflow's share."""

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_two_experiments_at_once_into_a_fresh_store(tmp_path):
    proc = run_cli("python", "-m", "actloss_bench.run_all", "kl_vs_soft_ce", "shape_mismatch",
                   "--seed", "7", "--results", str(tmp_path), "--extra", "trainer.epochs=2",
                   "seeds=2", "task.n_samples=200", "tune.lr_factors=[1,3]")
    assert "[2/2]" in proc.stdout and "all experiments in" in proc.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    for name in ("kl_vs_soft_ce", "shape_mismatch"):
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id])
        cells = [r for r in runs if r.data.tags.get("role") == "cell"]
        models = [r for r in runs if "job_key" in r.data.tags]
        assert len(cells) == 2 and all(r.data.tags["status"] == "ok" for r in cells)
        assert sorted(r.data.params["seed"] for r in models) == ["7", "7", "8", "8"]
        assert all(r.data.tags["experiment_name"] == name for r in runs)
    default = client.get_experiment_by_name("Default")
    assert default is None or client.search_runs([default.experiment_id]) == []
    summary = json.loads((tmp_path / "logs" / "run_summary.json").read_text())
    assert summary["models"] == 2 * 2 * 2 * 2  # experiments x cells x seeds x lrs
    assert 0 < summary["mlflow_share"] < 1 and summary["train_s"] > 0


def test_a_bad_seed_base_is_one_line(tmp_path):
    proc = run_cli("python", "-m", "actloss_bench.run_all", "--seed", "-1", "--results",
                   str(tmp_path), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("run_all: error: --seed -1 is not allowed; it must be an "
                                   "integer >= 0")
