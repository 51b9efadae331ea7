"""Real Hydra multiruns into a temporary SQLite store, read back through MLflow."""

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli

pytestmark = pytest.mark.slow


def _runs(uri, experiment="actloss_bench"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing"
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_multirun_logs_every_job_with_metrics_tags_and_artifacts(tmp_path, store, small):
    proc = run_cli("actloss-bench", "-m", "activation=relu,sigmoid", "loss=bce_with_logits,bce",
                   "head=linear", "task=binary,imbalanced", "seed=0", *small,
                   f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/sweep")
    client, runs = _runs(store)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 8
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    by_status = {}
    for r in children:
        by_status.setdefault(r.data.tags["status"], []).append(r)
    assert len(by_status["ok"]) == 4 and len(by_status["skipped"]) == 4  # bce on logits: invalid
    assert all("BCELoss" in r.data.tags["skip_reason"] for r in by_status["skipped"])

    run = by_status["ok"][0]
    assert run.data.params["activation"] in ("relu", "sigmoid")
    assert run.data.params["model.depth"] == "2" and run.data.params["loss"] == "bce_with_logits"
    assert run.data.tags["combo"] == "canonical" and "diagnosis" in run.data.tags
    assert run.data.tags["sweep_id"] == parents[0].data.tags["sweep_id"]
    history = client.get_metric_history(run.info.run_id, "val/ece")
    assert [m.step for m in history] == [1, 2, 3]
    for name in ("test/accuracy", "test/roc_auc", "test/pr_auc", "dead/fraction",
                 "grad_norm/ratio_first_last", "val/brier", "val/nll"):
        assert name in run.data.metrics, name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "predictions.csv", "plots"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/diagnostics.png"]
    assert "8 jobs logged (4 ok, 4 skipped)" in proc.stdout


def test_joblib_sweep_into_fresh_store_loses_and_misfiles_nothing(tmp_path, store, small):
    run_cli("actloss-bench", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "activation=relu,tanh,gelu", "seed=0,1", *small, "tracking.experiment=par",
            f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/sweep")
    client, runs = _runs(store, "par")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 6
    assert sorted((r.data.params["activation"], r.data.params["seed"]) for r in children) == sorted(
        (a, s) for a in ("relu", "tanh", "gelu") for s in ("0", "1"))
    assert all(r.data.tags["status"] == "ok" for r in children)
    default = client.get_experiment_by_name("Default")
    misfiled = client.search_runs([default.experiment_id]) if default else []
    assert misfiled == []


def test_rerun_skips_finished_jobs(tmp_path, store, small):
    args = ["actloss-bench", "-m", "activation=relu,tanh", *small, f"tracking.uri={store}"]
    run_cli(*args, f"hydra.sweep.dir={tmp_path}/a")
    second = run_cli(*args, f"hydra.sweep.dir={tmp_path}/b")
    assert second.stdout.count("[done]") == 2
    _, runs = _runs(store)
    assert len([r for r in runs if r.data.tags.get("mlflow.parentRunId")]) == 2
