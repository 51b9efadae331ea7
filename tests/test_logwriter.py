"""The log writer process: what a job sends is written in order, failures come back."""

import os
import signal
from functools import partial

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from actloss_bench import tracking
from actloss_bench.artifacts import write_text
from actloss_bench.logwriter import RUN_ID_MARK, LogWriter
from conftest import run_cli


def test_runs_are_written_in_order_with_artifacts_and_summary(store, capfd):
    experiment_id = tracking.ensure_experiment(store, "w")
    writer = LogWriter(store)
    try:
        runs = [writer.start_run(experiment_id, run_name=f"r{i}", params={"seed": str(i)},
                                 tags={"status": "running", "job_key": f"k{i}"})
                for i in range(2)]
        for epoch in range(1, 6):
            for i, run in enumerate(runs):
                run.log_epoch(epoch, {"val/loss": 1.0 / epoch + i, "train/loss": 2.0})
        for i, run in enumerate(runs):
            run.finish(status="ok", metrics={"test/accuracy": 0.5 + i}, step=5,
                       tags={"diagnosis": "none"},
                       artifacts={"config.yaml": partial(write_text, f"seed: {i}")},
                       summary=f"[ok] r{i} (run {RUN_ID_MARK})")
        assert writer.drain() == []
    finally:
        writer.close()
    out = capfd.readouterr().out
    client = MlflowClient(store)
    found = {r.info.run_name: r for r in client.search_runs([experiment_id])}
    assert set(found) == {"r0", "r1"}
    for i in range(2):
        run = found[f"r{i}"]
        assert run.data.tags["status"] == "ok" and run.info.status == "FINISHED"
        assert run.data.params == {"seed": str(i)}
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert [m.step for m in history] == [1, 2, 3, 4, 5]
        assert history[-1].value == pytest.approx(0.2 + i)
        assert run.data.metrics["test/accuracy"] == 0.5 + i
        path = client.download_artifacts(run.info.run_id, "config.yaml")
        assert open(path).read() == f"seed: {i}"
        assert f"[ok] r{i} (run {run.info.run_id[:8]})" in out  # printed once written


def test_store_failures_come_back_from_drain(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the writer inherits these
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    writer = LogWriter("http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        run = writer.start_run("0", run_name="lost", params={}, tags={})
        run.finish(status="ok")
        errors = writer.drain()
    finally:
        writer.close()
    assert len(errors) == 1
    assert errors[0].startswith("run lost could not be logged to http://127.0.0.1:9")
    assert errors[0].endswith("a re-run will redo this job")


def test_a_dead_writer_is_reported_not_waited_for(store):
    writer = LogWriter(store)
    os.kill(writer._proc.pid, signal.SIGKILL)
    writer._proc.wait()
    writer.start_run("0", run_name="x", params={}, tags={})
    errors = writer.drain()
    assert len(errors) == 1 and "exited" in errors[0]
    writer.close()


def test_a_message_the_writer_cannot_read_is_reported(store):
    writer = LogWriter(store)
    try:
        run = writer.start_run("0", run_name="y", params={}, tags={})
        run.finish(status="ok", artifacts={"x": partial(_local_writer, "x")})
        errors = writer.drain()
    finally:
        writer.close()
    assert len(errors) == 1 and "could not be read" in errors[0] and "re-run" in errors[0]


def _local_writer(text, path):  # defined in a test module: the writer cannot import it
    path.write_text(text)


@pytest.mark.slow
def test_log_every_keeps_every_nth_and_the_last_epoch(tmp_path, store):
    run_cli("actloss-bench", "task.n_samples=300", "model.width=16", "trainer.epochs=7",
            "tracking.log_every=3", f"tracking.uri={store}")
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("actloss_bench").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [3, 6, 7]
    assert run.data.tags["status"] == "ok"


class _CountingClient:
    def __init__(self):
        self.batches = []

    def log_batch(self, run_id, metrics=(), **_):
        self.batches.append(len(metrics))

    def set_terminated(self, run_id, status):
        self.batches.append(status)


def test_idle_flushes_are_spaced_by_cost_over_duty_and_capped(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: now[0])
    logger = tracking.RunLogger(_CountingClient(), "r", flush_every_s=60)
    assert logger.seconds_until_idle_flush(0.2, 0.1) is None  # nothing pending
    logger.log_epoch(1, {"val/loss": 1.0})
    logger._last_cost = 0.01  # the last request took 10 ms: wait 10 / 0.2 = 50 ms
    assert logger.seconds_until_idle_flush(0.2, 0.1) == pytest.approx(0.05)
    now[0] += 0.03
    assert logger.seconds_until_idle_flush(0.2, 0.1) == pytest.approx(0.02)
    logger._last_cost = 0.5  # a slow request: the spacing is capped, not 2.5 s
    assert logger.seconds_until_idle_flush(0.2, 0.1) == pytest.approx(0.07)
    now[0] += 0.2
    assert logger.seconds_until_idle_flush(0.2, 0.1) == 0.0
    logger.flush()
    assert logger.client.batches == [1] and logger.seconds_until_idle_flush(0.2, 0.1) is None


def test_flush_spacing_batches_for_servers_only():
    from actloss_bench.logwriter import flush_spacing

    assert flush_spacing("http://127.0.0.1:5000") == (0.2, 0.1)
    assert flush_spacing("https://mlflow.example.org") == (0.2, 0.1)
    assert flush_spacing("sqlite:///results/mlflow.db") == (1.0, float("inf"))


def test_the_last_epoch_goes_out_with_finish_in_one_request():
    logger = tracking.RunLogger(_CountingClient(), "r", flush_every_s=60, last_step=3)
    for step in (1, 2):
        logger.log_epoch(step, {"val/loss": 1.0, "train/loss": 1.0})
    assert logger.seconds_until_idle_flush() == 0.0  # back to back: flush now
    logger.flush()
    logger.log_epoch(3, {"val/loss": 1.0, "train/loss": 1.0})
    assert logger.seconds_until_idle_flush() is None  # held for finish, not flushed alone
    logger.finish(status="ok", metrics={"test/loss": 1.0}, step=3)
    assert logger.client.batches == [4, 3, "FINISHED"]  # 2 epochs; last epoch + test metric


def test_runs_without_a_known_last_step_flush_every_epoch():
    logger = tracking.RunLogger(_CountingClient(), "r", flush_every_s=60)
    logger.log_epoch(100, {"val/loss": 1.0})
    assert logger.seconds_until_idle_flush() == 0.0


@pytest.mark.parametrize("warm_plots", [False, True])
def test_the_writers_warm_up_imports_only_and_leaves_a_fresh_store_alone(tmp_path, warm_plots):
    """The writer starts before the launching process creates the SQLite file; its warm-up
    must not open the store, or it would race that creation."""
    db = tmp_path / "fresh" / "mlflow.db"
    writer = LogWriter(f"sqlite:///{db}", warm_plots=warm_plots)
    try:
        assert writer.drain() == []  # answered after the warm-up: it ran and succeeded
        assert not db.exists() and not db.parent.exists()
    finally:
        writer.close()


def test_a_basic_launcher_sweep_starts_its_writer_before_the_experiment(tmp_path, monkeypatch):
    """Its start-up then overlaps the sweep's own (one-job sweep: 9.3 s vs 10.8 s measured)."""
    from actloss_bench import logwriter
    from actloss_bench.sweep import MlflowSweepCallback

    order = []
    monkeypatch.setattr(logwriter, "writer_for",
                        lambda uri, warm_plots=False: order.append(("writer", warm_plots)))
    monkeypatch.setattr(tracking, "ensure_experiment",
                        lambda *a: order.append(("experiment",)) or "0")

    class StopHere(Exception):
        pass

    def stop(*a, **k):
        raise StopHere

    monkeypatch.setattr(tracking, "_client", stop)
    cfg = OmegaConf.create({
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "e",
                     "artifact_root": None, "log_plots": True},
        "hydra": {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher."
                                          "BasicLauncher"}}})
    with pytest.raises(StopHere):
        MlflowSweepCallback().on_multirun_start(cfg)
    assert order == [("writer", True), ("experiment",)]
    order.clear()
    cfg.hydra.launcher._target_ = "hydra_plugins.hydra_joblib_launcher.JoblibLauncher"
    with pytest.raises(StopHere):
        MlflowSweepCallback().on_multirun_start(cfg)
    assert order == [("experiment",)]  # jobs in worker processes start their own


def test_a_writer_never_given_work_is_not_waited_for(store, monkeypatch):
    """Started early by a sweep whose jobs were all done before: exiting does not wait for
    its warm-up imports (measured: a resumed one-experiment sweep took 8.4 s instead of 6.4 s
    when it did). A writer that was given a run is drained and exits on its own."""
    from actloss_bench import logwriter

    experiment_id = tracking.ensure_experiment(store, "w")
    used = LogWriter(store)
    used.start_run(experiment_id, run_name="r", params={}, tags={}).finish(status="ok")
    unused = LogWriter(store, warm_plots=True)
    assert unused.drain() == [] and not unused.given_work  # a sync is not work
    monkeypatch.setattr(logwriter, "_writers", {"used": used, "unused": unused})
    assert logwriter.close_all() == []
    assert used._proc.returncode == 0  # read to the end of its input, wrote, exited
    assert unused._proc.returncode == -signal.SIGKILL  # stopped, not waited for
    runs = MlflowClient(store).search_runs([experiment_id])
    assert [r.data.tags["status"] for r in runs] == ["ok"]
