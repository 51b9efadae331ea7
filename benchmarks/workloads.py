"""One benchmark workload per process:

    python benchmarks/workloads.py VARIANT [URI|-] [EPOCHS|-] [OVERRIDE ...]

Prints one JSON line: seconds of training (after imports and data generation), of it the wait
for the writes after training, the optimiser steps of one training, peak RSS, RSS before
training, and the CPU seconds the log writer process (and the tracking server, when its
process group is given as ``BENCH_SERVER_PGID``) spent meanwhile. Every variant trains the same
MLP (actloss_bench.model.MLP, same seed) on the same data for the same number of optimiser
steps; only the loop and the logging differ.

Variants:
  naive_train   the tutorial loop: TensorDataset + DataLoader(shuffle), loss.item() every
                step, an extra DataLoader pass over validation each epoch
  naive_logged  the same, plus mlflow.log_metric for every value (per step and per epoch)
  bench_train   actloss_bench.training.train (all metrics and diagnostics every epoch)
  bench_logged  the same, logged as actloss-bench does (log writer process, artifacts, no
                plots), timed until everything is written (``end_wait_s``: the part spent
                waiting for the writes after training ended)
  bench_plots   bench_logged plus the per-run diagnostics figure
  bench_train_2threads  bench_train with 2 torch threads
  <variant>_xN  N runs back to back in one process, as a sweep's basic launcher runs them
                (logged variants wait for the writes once, at the end)
  <variant>_beside_busy  (in a pair) the variant while another process spins a pure-Python
                loop (no memory traffic) on the other core: what any work beside the job costs it
  pair:A:B:R    R rounds of variants A and B in this one warm process, alternating which runs
                first; prints every round's two times (and B's end-of-run wait). Logging's share
                is a few percent, below this VM's process-to-process noise (the same variant
                varies by 5-10% between fresh processes): compared inside one process, round by
                round, it is measured, not drowned.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

import torch
from hydra import compose, initialize_config_dir

from actloss_bench import app, training  # noqa: F401 - imported before timing
from actloss_bench.paths import CONF_DIR
from actloss_bench.schema import register_schema

# The representative config of the speed issue: binary, 4000 samples, 20 features,
# depth 4 x width 64, batch 128, 100 epochs, Adam, CPU.
REPRESENTATIVE = ["task=binary", "task.n_samples=4000", "task.n_features=20", "model.depth=4",
                  "model.width=64", "trainer.batch_size=128", "trainer.epochs=100",
                  "optimizer=adam", "trainer.device=cpu", "tracking.resume=false"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


BUSY = "_beside_busy"


def busy_neighbour() -> subprocess.Popen:
    """A process spinning a pure-Python loop: it keeps a core busy without memory traffic,
    as the log writer or a tracking server does while it handles a request."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _stat(pid) -> list:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 on), [] when the
    process is gone or there is no ``/proc``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def cpu_seconds(pids) -> float:
    """User + system CPU seconds of these processes so far (Linux ``/proc``; 0 elsewhere)."""
    total = 0
    for fields in filter(None, map(_stat, pids)):
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list:
    """The processes of a process group (the tracking server: gunicorn and its workers)."""
    pids = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")]
    return [pid for pid in pids if _stat(pid)[2:3] == [str(pgid)]]  # field 5: the group


def logging_pids() -> list:
    """This process's log writers, and the tracking server's processes when given."""
    from actloss_bench import logwriter

    pids = [w._proc.pid for w in logwriter._writers.values()]
    if os.environ.get("BENCH_SERVER_PGID"):
        pids += group_pids(int(os.environ["BENCH_SERVER_PGID"]))
    return pids


def config(extra=()):
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=REPRESENTATIVE + list(extra))


def naive(cfg, data, uri=None) -> int:
    """The loop most tutorials teach; returns the optimiser steps it took."""
    from torch.utils.data import DataLoader, TensorDataset

    from actloss_bench.model import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, in_dim=data.n_features, out_dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    train = DataLoader(TensorDataset(data.X_train, data.y_train.float()),
                       batch_size=cfg.trainer.batch_size, shuffle=True)
    val = DataLoader(TensorDataset(data.X_val, data.y_val.float()),
                     batch_size=cfg.trainer.batch_size)
    if uri:
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("naive")
        mlflow.start_run()
    step = 0
    for epoch in range(cfg.trainer.epochs):
        model.train()
        for xb, yb in train:
            opt.zero_grad()
            loss = loss_fn(model(xb).squeeze(1), yb)
            loss.backward()
            opt.step()
            step += 1
            if uri:
                mlflow.log_metric("train_loss", loss.item(), step=step)
            else:
                loss.item()
        model.eval()
        correct, total, val_loss = 0, 0, 0.0
        with torch.no_grad():
            for xb, yb in val:
                out = model(xb).squeeze(1)
                val_loss += loss_fn(out, yb).item() * len(yb)
                correct += ((out > 0).float() == yb).sum().item()
                total += len(yb)
        if uri:
            mlflow.log_metric("val_loss", val_loss / total, step=epoch)
            mlflow.log_metric("val_accuracy", correct / total, step=epoch)
    if uri:
        mlflow.end_run()
    return step


def bench(cfg, data, uri=None, plots=False, runs=1) -> Tuple[float, int]:
    """``runs`` trainings logged as actloss-bench logs them: through the log writer process,
    waiting at the end until everything is written (a sweep's basic launcher waits once, at
    the end of the sweep: that is ``runs`` > 1). Returns the seconds spent waiting for the
    writes after the last training, and the optimiser steps of one training."""
    from actloss_bench import tracking
    from actloss_bench.app import epoch_logger, log_last_epoch, run_artifacts, start_logged_run
    from actloss_bench.logwriter import writer_for
    from actloss_bench.training import train

    if uri is None:
        for _ in range(runs):
            result = train(cfg, data=data)
        return 0.0, result.steps
    experiment_id = tracking.ensure_experiment(uri, "bench")
    writer = writer_for(uri)
    for _ in range(runs):
        run = start_logged_run(writer, experiment_id, cfg, run_name="bench", tags={})
        every = cfg.tracking.log_every
        result = train(cfg, on_epoch=epoch_logger(run, every), data=data)
        log_last_epoch(run, result.history, every)
        run.finish(status=result.status, metrics=result.test,
                   artifacts=run_artifacts(cfg, result, plots), step=len(result.history))
    waited = time.perf_counter()
    errors = writer.drain()
    assert not errors, errors
    return time.perf_counter() - waited, result.steps


def run_variant(variant: str, cfg, data, uri) -> Tuple[float, int]:
    """Runs the variant; the seconds spent waiting for the writes after the last training,
    and the optimiser steps of one training (the same for every variant: tested)."""
    variant = variant.replace(BUSY, "")
    if variant.startswith("naive"):
        return 0.0, naive(cfg, data, uri if "logged" in variant else None)
    runs = int(variant.rsplit("_x", 1)[1]) if "_x" in variant else 1
    return bench(cfg, data, uri if ("logged" in variant or "plots" in variant) else None,
                 plots="plots" in variant, runs=runs)


def pairs(a: str, b: str, rounds: int, cfg, data, uri) -> list:
    """``rounds`` rounds of A and B, one after the other, A first in even rounds."""
    out = []
    for i in range(rounds):
        seconds, waits = {}, {}
        for variant in ((a, b) if i % 2 == 0 else (b, a)):
            neighbour = busy_neighbour() if variant.endswith(BUSY) else None
            if neighbour:
                time.sleep(0.2)  # its interpreter started and spinning before the clock does
            started = time.perf_counter()
            waits[variant], _ = run_variant(variant, cfg, data, uri)
            seconds[variant] = time.perf_counter() - started
            if neighbour:
                neighbour.kill()
                neighbour.wait()
        out.append({"a_s": seconds[a], "b_s": seconds[b], "b_end_wait_s": waits[b]})
    return out


def main() -> None:
    variant = sys.argv[1]
    uri = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    threads = 2 if variant.endswith("2threads") else 1
    torch.set_num_threads(threads)
    extra = [f"trainer.threads={threads}"] + ([f"trainer.epochs={epochs}"] if epochs else [])
    extra += sys.argv[4:]  # more overrides, e.g. tracking.log_every=10
    cfg = config(extra)
    warm = config(extra + ["trainer.epochs=2"])
    from actloss_bench.tasks import make_dataset

    data = make_dataset(cfg.task, cfg.seed)
    if uri is None and ("logged" in variant or "plots" in variant):
        uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    # A sweep's jobs after the first run in a warm process: imports, the first optimiser
    # (which imports torch._dynamo, ~1 s) and MLflow's first-use costs are paid by a short
    # warm-up run of the same variant, untimed, on both sides.
    if variant.startswith("pair:"):
        _, a, b, rounds = variant.split(":")
        for v in (a, b):
            run_variant(v, warm, data, uri)
        print(json.dumps({"variant": variant, "rounds": pairs(a, b, int(rounds), cfg, data, uri)}))
        return
    run_variant(variant, warm, data, uri)
    before = rss_mb()
    pids = logging_pids()
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    end_wait, steps = run_variant(variant, cfg, data, uri)
    seconds = time.perf_counter() - started
    print(json.dumps({"variant": variant, "seconds": seconds, "end_wait_s": end_wait,
                      "steps": steps, "peak_rss_mb": rss_mb(), "rss_before_mb": before,
                      "logging_cpu_s": cpu_seconds(pids) - cpu_before}))


if __name__ == "__main__":
    main()
