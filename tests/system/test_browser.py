"""The MLflow UI as a reviewer uses it, in a real browser (Debian's Chromium, driven by
playwright): `make ui` prints an address that lands on the experiment's model runs with their
key metrics as columns, a run's metric charts render, and the verdict's figure opens from the
sweep's parent run. The experiment's description carries the claim and the verdict."""

import os
import signal
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from actloss_bench.ops import screenshots
from actloss_bench.ops.server import free_port, wait_until_up
from conftest import ROOT, require_system, run_cli

pytestmark = pytest.mark.slow
EXPERIMENT = "softmax_before_ce"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    require_system("Chromium (apt-get install -y chromium)",
                   [] if screenshots.chromium_path() else ["chromium"])
    results = tmp_path_factory.mktemp("results")
    store = f"sqlite:///{results}/mlflow.db"
    run_cli("actloss-bench", "-m", f"experiment={EXPERIMENT}", "seeds=3", "trainer.epochs=3",
            "task.n_samples=300", "model.width=8", f"tracking.uri={store}",
            f"hydra.sweep.dir={results}/sweep")
    run_cli("actloss-report", EXPERIMENT, "--uri", store, "--out", str(results))
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "ui", f"RESULTS={results}", f"PORT={port}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    printed = [proc.stdout.readline() for _ in range(2)]
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, proc, timeout_s=90)
    yield {"base": base, "printed": printed, "client": MlflowClient(tracking_uri=store)}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _runs(client):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return exp, client.search_runs([exp.experiment_id], max_results=1000)


def test_make_ui_prints_the_address_that_lands_on_the_model_runs(ui):
    exp, runs = _runs(ui["client"])
    models = [r for r in runs if "job_key" in r.data.tags]
    address = next(line.split()[-1] for line in ui["printed"] if EXPERIMENT in line)
    assert address == (f"{ui['base']}/#/experiments/{exp.experiment_id}/runs?"
                       "viewStateShareKey=runs&workflowType=machine_learning")
    with screenshots.browser_page() as page:
        assert screenshots.open_runs(page, ui["base"], exp.experiment_id) == len(models) == 12
        headers = page.locator('[col-id^="metrics."]').evaluate_all(
            "cells => cells.map(c => c.getAttribute('col-id'))")
        assert "metrics.`test/balanced_accuracy`" in headers and "metrics.`test/ece`" in headers
        assert page.get_by_text(models[0].info.run_name).count() >= 1
        assert "Model training" in page.content()  # not MLflow 3's GenAI overview


def test_a_runs_metric_charts_render_and_the_verdict_figure_opens(ui):
    exp, runs = _runs(ui["client"])
    cell = next(r for r in runs if r.data.tags.get("role") == "cell")
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    with screenshots.browser_page() as page:
        assert screenshots.open_run_charts(page, ui["base"], exp.experiment_id,
                                           cell.info.run_id) >= 3
        assert screenshots.open_figure(page, ui["base"], exp.experiment_id, parent.info.run_id,
                                       "report/curves.png") > 100


def test_the_experiment_description_states_claim_and_verdict(ui):
    exp, _ = _runs(ui["client"])
    note = exp.tags["mlflow.note.content"]
    assert note.startswith("Never put a softmax before CrossEntropyLoss")
    assert "**Verdict: " in note
