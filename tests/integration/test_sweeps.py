"""Real Hydra multiruns into a temporary SQLite store, read back through MLflow."""

import json

import pytest
from mlflow.tracking import MlflowClient

from actloss_bench.ops.ui import experiment_addresses
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
                   "tracking.log_plots=true",
                   f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/sweep")
    client, runs = _runs(store)
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
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
    assert "8 runs logged (4 ok, 4 skipped)" in proc.stdout
    assert "[8/8 jobs, 8/8 models," in proc.stdout  # progress on every job's line

    # The runs view the MLflow UI opens from make ui's address: model runs, swept params and
    # the task kind's key metrics as columns (the browser test opens it for real).
    experiment = client.get_experiment(run.info.experiment_id)
    view = json.loads(experiment.tags["mlflow.sharedViewState.runs"])
    assert view["searchFilter"] == "tags.job_key LIKE '%'"
    assert view["selectedColumns"][:4] == ["params.`activation`", "params.`loss`",
                                           "params.`task`", "params.`seed`"]
    assert "metrics.`test/balanced_accuracy`" in view["selectedColumns"]
    lines = experiment_addresses(store, "http://127.0.0.1:5000")
    assert lines == [f"  actloss_bench                http://127.0.0.1:5000/#/experiments/"
                     f"{experiment.experiment_id}/runs?viewStateShareKey=runs&"
                     "workflowType=machine_learning"]


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


def _by_role(runs):
    out = {}
    for r in runs:
        out.setdefault(r.data.tags.get("role", "model"), []).append(r)
    return out


def test_a_population_logs_its_cell_and_each_seed_as_its_one_seed_run(tmp_path, store, small):
    """seeds=3 trains one population; each seed is its own run, with the params, job_key and
    metrics of the run that trains that seed alone."""
    run_cli("actloss-bench", "-m", "activation=relu,tanh", "seeds=3", "seed=4", *small,
            "tracking.experiment=pop", f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/a")
    run_cli("actloss-bench", "-m", "activation=relu", "seed=4,5,6", *small,
            "tracking.experiment=alone", f"tracking.uri={store}", f"hydra.sweep.dir={tmp_path}/b")
    client, runs = _runs(store, "pop")
    roles = _by_role(runs)
    assert len(roles["sweep"]) == 1 and len(roles["cell"]) == 2 and len(roles["model"]) == 6
    cells = {c.info.run_id: c for c in roles["cell"]}
    assert all(r.data.tags["mlflow.parentRunId"] in cells for r in roles["model"])
    cell = roles["cell"][0]
    assert {a.path for a in client.list_artifacts(cell.info.run_id)} >= {
        "config.yaml", "population.csv", "histories.csv", "predictions.csv"}
    # The seed-mean curve and its band (mean -+ sd over seeds), for MLflow's charts
    for suffix in ("mean", "lo", "hi"):
        assert [m.step for m in client.get_metric_history(cell.info.run_id,
                                                          f"val/loss_{suffix}")] == [1, 2, 3]
    _, alone = _runs(store, "alone")
    alone = {r.data.params["seed"]: r for r in _by_role(alone)["model"]}
    together = {r.data.params["seed"]: r for r in roles["model"]
                if r.data.params["activation"] == "relu"}
    assert sorted(together) == ["4", "5", "6"]
    for seed, run in together.items():
        differ = {k for k in run.data.params if run.data.params[k] != alone[seed].data.params[k]}
        assert differ == {"tracking.experiment"} and run.data.params.keys() == \
            alone[seed].data.params.keys()
        assert run.data.tags["job_key"] == alone[seed].data.tags["job_key"]
        assert run.data.metrics.keys() == alone[seed].data.metrics.keys()
        for key, value in alone[seed].data.metrics.items():
            assert run.data.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_the_lr_is_chosen_on_tuning_seeds_and_evaluated_on_others(tmp_path, store, small):
    """The grid trains on tuning seeds (100000...), grows past an edge choice, and only the
    evaluation seeds (0, 1) are trained at the chosen and the default lr and logged."""
    import pandas as pd

    from actloss_bench.engine.protocol import select_lr

    proc = run_cli("actloss-bench", "-m", "seeds=2", "tune.seeds=2", "tune.lr_factors=[0.1,10]",
                   "tune.max_extensions=1", *small, f"tracking.uri={store}",
                   f"hydra.sweep.dir={tmp_path}/a")
    client, runs = _runs(store)
    roles = _by_role(runs)
    (cell,) = roles["cell"]
    lr = float(cell.data.tags["selected_lr"])
    assert f"lr {lr:g} chosen on val/balanced_accuracy" in proc.stdout
    frame = pd.read_csv(client.download_artifacts(cell.info.run_id, "population.csv",
                                                  str(tmp_path)))
    tune, evaluation = frame[frame["role"] == "tune"], frame[frame["role"] == "eval"]
    assert set(tune["seed"]) == {100000, 100001} and set(evaluation["seed"]) == {0, 1}
    assert {1e-4, 1e-2} <= set(tune["lr"]) and len(set(tune["lr"])) in (2, 3)
    grid = sorted(tune["lr"].unique())
    assert cell.data.tags["lr_grid"] == ",".join(f"{x:g}" for x in grid)
    assert select_lr(tune, "val/balanced_accuracy") == lr  # the choice never saw a test metric
    assert set(evaluation["lr"]) == {lr, 1e-3}  # the chosen and the default lr
    assert frame.loc[frame["selected"], "lr"].unique().tolist() == [lr]
    assert set(frame.loc[frame["selected"], "seed"]) == {0, 1}
    assert sorted(r.data.params["optimizer.lr"] for r in roles["model"]) == [str(lr)] * 2
    assert all(r.data.params["tune.lr_factors"] == "None" for r in roles["model"])


def test_rerun_of_a_population_sweep_skips_finished_cells(tmp_path, store, small):
    args = ["actloss-bench", "-m", "activation=relu,tanh", "seeds=2", *small,
            f"tracking.uri={store}"]
    run_cli(*args, f"hydra.sweep.dir={tmp_path}/a")
    second = run_cli(*args, f"hydra.sweep.dir={tmp_path}/b")
    assert second.stdout.count("[done]") == 2
    _, runs = _runs(store)
    roles = _by_role(runs)
    assert len(roles["cell"]) == 2 and len(roles["model"]) == 4
    sweeps = {r.data.tags["sweep_id"] for r in roles["sweep"]}
    assert all(r.data.tags["reused_by_sweeps"] in sweeps for r in roles["cell"])


def test_a_multilabel_sweep_logs_per_label_metrics(tmp_path, store, small):
    run_cli("actloss-bench", "-m", "task=multilabel", "task.n_classes=3",
            "loss=bce_with_logits,ce", "head=linear", *small, f"tracking.uri={store}",
            f"hydra.sweep.dir={tmp_path}/sweep")
    client, runs = _runs(store)
    jobs = {r.data.params["loss"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert jobs["ce"].data.tags["status"] == "skipped"  # one class per sample: invalid
    run = jobs["bce_with_logits"]
    assert run.data.tags["status"] == "ok" and run.data.tags["combo"] == "canonical"
    for name in ("subset_accuracy", "hamming_loss", "f1_macro", "ece", "roc_auc",
                 *(f"{m}_label_{j}" for m in ("f1", "ece") for j in range(3))):
        assert f"test/{name}" in run.data.metrics, name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/ece_label_2")] == \
        [1, 2, 3]
