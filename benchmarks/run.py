"""``make bench``: the bench against the loop people write by hand, in one run, as ratios.

Two kinds of measurement, both A/B so that machine noise hits both sides alike:

- fresh processes per variant, interleaved (A B A B ...): per-variant medians and peak memory;
  their ratios are medians of each round's own ratio (``paired``);
- paired rounds inside one warm process (``pair``): the two sides alternate 6-10 times. The
  targets' ratios and logging shares come from these: logging costs a few percent, and the
  same variant varies by 5-10% from one fresh process to the next on this VM: from 3 rounds
  of fresh processes, the HTTP five-run share read 6.3%, 3.4%, 3.6% and -2.3% in four runs.

Writes ``benchmarks/README.md``.

    python benchmarks/run.py [--reps 3] [--skip-sweeps]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
BIN = Path(PY).parent


def workload(variant: str, uri: str | None = None, epochs: int | None = None,
             server_pgid: int | None = None) -> dict:
    name, *extra = variant.split("+")  # "bench_logged+tracking.log_every=10"
    cmd = [PY, str(HERE / "workloads.py"), name, uri or "-", str(epochs) if epochs else "-",
           *extra]
    env = dict(os.environ, **({"BENCH_SERVER_PGID": str(server_pgid)} if server_pgid else {}))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def logging_cpu(uri: str | None = None, server_pgid: int | None = None, runs: int = 5) -> dict:
    """CPU seconds that logging takes beside the job, per run (``runs`` logged runs back to
    back in one process, as a sweep's basic launcher runs them): the log writer process's, and
    the tracking server's when its process group is given; and the run's own seconds."""
    r = workload(f"bench_logged_x{runs}", uri, server_pgid=server_pgid)
    return {"cpu_s": r["logging_cpu_s"] / runs, "run_s": r["seconds"] / runs}


def interleaved(variants: list, reps: int, uri: str | None = None,
                epochs: int | None = None) -> dict:
    results = {v: [] for v in variants}
    for _ in range(reps):
        for v in variants:
            results[v].append(workload(v, uri, epochs))
    return {v: {"seconds": statistics.median(r["seconds"] for r in rs),
                "end_wait_s": statistics.median(r["end_wait_s"] for r in rs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "all": [round(r["seconds"], 3) for r in rs]}
            for v, rs in results.items()}


def paired(a: dict, b: dict) -> float:
    """Median over rounds of a's time / b's time in the same round: this VM's speed drifts by
    10-20% within seconds, so a ratio of two medians taken minutes apart is noisier than the
    median of ratios measured side by side."""
    return statistics.median(x / y for x, y in zip(a["all"], b["all"]))


# Rounds of a paired A/B in one process: a one-run round takes ~2 s, a 5-run round ~9 s.
# With 10 rounds a one-run share moved by 3-5 points between bench runs (single rounds spread
# over 10-20 points), so one-run pairs take 20.
PAIR_ROUNDS = {1: 20, 5: 6}


def pair(a: str, b: str, uri: str | None = None, runs: int = 1, extra: str = "") -> dict:
    """A and B alternated in one warm process (``workloads.pairs``): the median of each
    round's ``a / b`` (``ratio``) and ``1 - a / b`` (``share``, when A is B without logging),
    and the median share of B spent waiting for its writes after training (``end_wait``)."""
    rounds = PAIR_ROUNDS[runs]
    out = workload(f"pair:{a}:{b}:{rounds}" + (f"+{extra}" if extra else ""), uri)["rounds"]
    ratios = [r["a_s"] / r["b_s"] for r in out]
    return {"ratio": statistics.median(ratios), "share": 1 - statistics.median(ratios),
            "end_wait": statistics.median(r["b_end_wait_s"] / r["b_s"] for r in out),
            "rounds": [round(x, 3) for x in ratios], "a": a, "b": b + (f" ({extra})" if extra
                                                                       else "")}


def share(train: dict, logged: dict) -> float:
    """Logging's share of a logged run's time, paired by round: 1 - train / logged."""
    return 1 - paired(train, logged)


def start_server(root: Path, plain_mlflow: bool = False):
    sys.path.insert(0, str(ROOT))
    from actloss_bench.server import free_port, start_local

    return start_local(root, free_port(), plain_mlflow=plain_mlflow)


def request_seconds(url: str, requests: int = 30) -> float:
    """Median time of one epoch's ``log_batch`` (26 values) against a server, one after
    another on one client, as the log writer sends them."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run_id = client.create_run(client.create_experiment("latency")).info.run_id
    times = []
    for step in range(requests):
        metrics = [Metric(f"m{k}", float(k), 0, step) for k in range(26)]
        started = time.perf_counter()
        client.log_batch(run_id, metrics=metrics)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


SWEEP = ["activation=relu,tanh,gelu,silu", "seed=0,1,2,3,4,5", "task.n_samples=2000",
         "trainer.epochs=20", "tracking.log_plots=true"]


SWEEP_ROUNDS = 3


def sweep_wall(extra: list, n_jobs_args: list) -> float:
    tmp = Path(tempfile.mkdtemp())
    started = time.perf_counter()
    subprocess.run([str(BIN / "actloss-bench"), "-m", *n_jobs_args, *extra,
                    f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"hydra.sweep.dir={tmp}/sweep"],
                   check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - started
    shutil.rmtree(tmp, ignore_errors=True)
    return wall


def training_seconds_of_sweep_jobs() -> float:
    """Mean in-process training time of the sweep's 24 configs (no logging, warm process)."""
    code = """
import time, itertools, torch
from hydra import compose, initialize_config_dir
from actloss_bench.paths import CONF_DIR
from actloss_bench.schema import register_schema
from actloss_bench.training import train
register_schema()
torch.optim.Adam([torch.zeros(1, requires_grad=True)])
times = []
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    for a, s in itertools.product("relu,tanh,gelu,silu".split(","), range(6)):
        cfg = compose("config", overrides=["activation=" + a, "seed=" + str(s),
                                           "task.n_samples=2000", "trainer.epochs=20"])
        t = time.perf_counter(); train(cfg); times.append(time.perf_counter() - t)
print(sum(times) / len(times))
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


VECTOR_CODE = """
import json, sys, time, torch
sys.path.insert(0, "benchmarks")
import workloads
from actloss_bench.training import train
from actloss_bench.vectorized import config_for_seed, train_seeds
seeds = list(range(16))
cfg = {t: workloads.config([f"trainer.threads={t}", "trainer.epochs=EPOCHS"]) for t in (1, 2)}
train_seeds(cfg[2], seeds[:2])  # warm-up: first optimiser, lazy imports
train(cfg[1])
# Each seed's config is built before timing (a sweep's job gets its config from Hydra; here
# only training is compared).
sequential = [config_for_seed(cfg[1], s) for s in seeds]
rounds = []
for _ in range(ROUNDS):  # A/B interleaved: each round times all three back to back
    times = {}
    for threads in (1, 2):
        t = time.perf_counter()
        train_seeds(cfg[threads], seeds)
        times[f"batched_{threads}t"] = time.perf_counter() - t
    torch.set_num_threads(1)
    t = time.perf_counter()
    for one in sequential:
        train(one)
    times["sequential_1t"] = time.perf_counter() - t
    rounds.append(times)
print(json.dumps(rounds))
"""


def vectorized_seeds(reps: int, rounds: int = 2, epochs: int = 100) -> dict:
    """16 seeds of the representative config (100 epochs): one at a time (1 thread, the fastest
    setting for one tiny model) vs one batched model with 1 and with 2 threads. ``reps``
    processes of ``rounds`` interleaved rounds each; times are medians over all rounds and the
    ratios medians of each round's own ratio (this VM's speed drifts by 10-20% between
    seconds, so only timings taken side by side are compared). At the target's config: fewer
    epochs would weigh the per-job costs both sides pay (16 datasets, the test metrics) more."""
    rounds_all = []
    for _ in range(reps):
        code = VECTOR_CODE.replace("ROUNDS", str(rounds)).replace("EPOCHS", str(epochs))
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout
        rounds_all += json.loads(out.strip().splitlines()[-1])
    result = {k: statistics.median(r[k] for r in rounds_all) for k in rounds_all[0]}
    for t in ("1t", "2t"):
        result[f"ratio_{t}"] = statistics.median(r["sequential_1t"] / r[f"batched_{t}"]
                                                 for r in rounds_all)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()
    rows, notes = [], {}

    print("fresh processes per variant, A/B interleaved ...", flush=True)
    ab = interleaved(["naive_train", "bench_train", "bench_logged", "bench_plots",
                      "bench_train_2threads", "naive_logged"], args.reps)
    for v, r in ab.items():
        print(f"  {v:<22} median {r['seconds']:.3f}s  runs {r['all']}  peak RSS "
              f"{r['peak_rss_mb']:.0f} MB")
    print("paired rounds in one process: training, SQLite logging ...", flush=True)
    pairs = {
        "train": pair("naive_train", "bench_train"),
        "sqlite_1": pair("bench_train", "bench_logged"),
        "sqlite_5": pair("bench_train_x5", "bench_logged_x5", runs=5),
        "sqlite_5_plots": pair("bench_train_x5", "bench_plots_x5", runs=5),
        # What a CPU-bound process on the other core costs the training: a scale for the
        # logging shares (the log writer, and a local server, work on that core).
        "busy_neighbour": pair("bench_train", "bench_train_beside_busy"),
    }
    cpu = {"SQLite": logging_cpu()}
    tmp = Path(tempfile.mkdtemp())
    print("logging over HTTP to a local mlflow server ...", flush=True)
    server, url = start_server(tmp / "server")
    try:
        # The naive loop at 30 epochs: its 570 per-step requests take ~30 s over HTTP already.
        http = interleaved(["bench_logged", "naive_logged"], args.reps, url, epochs=30)
        pairs.update({
            "http_1": pair("bench_train", "bench_logged", url),
            "http_1_every10": pair("bench_train", "bench_logged", url,
                                   extra="tracking.log_every=10"),
            "http_5": pair("bench_train_x5", "bench_logged_x5", url, runs=5),
            "http_5_every10": pair("bench_train_x5", "bench_logged_x5", url, runs=5,
                                   extra="tracking.log_every=10"),
        })
        cpu["HTTP"] = logging_cpu(url, server.pid)
        latency = {"make server": request_seconds(url)}
    finally:
        os.killpg(server.pid, signal.SIGKILL)
    server, url = start_server(tmp / "mlflow_default", plain_mlflow=True)
    try:
        latency["mlflow server"] = request_seconds(url)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
    print(f"  one epoch's log_batch: make server {1000 * latency['make server']:.1f} ms, "
          f"plain mlflow server {1000 * latency['mlflow server']:.1f} ms", flush=True)
    http = {f"{v} (30 epochs)": r for v, r in http.items()}
    for v, r in http.items():
        print(f"  {v:<22} median {r['seconds']:.3f}s  runs {r['all']}")
    for k, r in pairs.items():
        print(f"  {k:<16} {r['a']} / {r['b']}: median {r['ratio']:.3f}, rounds {r['rounds']}",
              flush=True)

    print("16 seeds: sequential fast path vs one batched model ...", flush=True)
    vec = vectorized_seeds(args.reps)
    print("  " + ", ".join(f"{k} {v:.2f}" + ("" if k.startswith("ratio") else "s")
                           for k, v in vec.items()), flush=True)

    rows += [
        ("training only: naive / bench", pairs["train"]["ratio"], ">= 3x"),
        ("training only: naive / bench, fresh processes",
         paired(ab["naive_train"], ab["bench_train"]), "-"),
        ("training + SQLite logging: naive / bench",
         paired(ab["naive_logged"], ab["bench_logged"]), ">= 3x"),
        ("training + HTTP logging (30 epochs): naive / bench",
         paired(http["naive_logged (30 epochs)"], http["bench_logged (30 epochs)"]), ">= 3x"),
        ("SQLite logging share, one run (waiting for its last write)",
         pairs["sqlite_1"]["share"], "< 5%"),
        ("SQLite: share of a run spent waiting for its writes after training",
         pairs["sqlite_1"]["end_wait"], "-"),
        ("SQLite logging share, 5 runs back to back (a sweep)", pairs["sqlite_5"]["share"],
         "< 5%"),
        ("SQLite logging + figures share, 5 runs back to back (a sweep)",
         pairs["sqlite_5_plots"]["share"], "-"),
        ("HTTP logging share, one run", pairs["http_1"]["share"], "< 5%"),
        ("HTTP: share of a run spent waiting for its writes after training",
         pairs["http_1"]["end_wait"], "-"),
        ("HTTP logging share, one run, tracking.log_every=10", pairs["http_1_every10"]["share"],
         "-"),
        ("HTTP logging share, 5 runs back to back (a sweep)", pairs["http_5"]["share"], "< 5%"),
        ("HTTP logging share, 5 runs back to back, tracking.log_every=10",
         pairs["http_5_every10"]["share"], "-"),
        ("training beside a busy process (a pure-Python loop) on the other core: slowdown",
         pairs["busy_neighbour"]["share"], "-"),
        ("SQLite: CPU of the log writer per run, beside the job (ms; the run takes)",
         f"{1000 * cpu['SQLite']['cpu_s']:.0f} ({cpu['SQLite']['run_s']:.2f} s)", "-"),
        ("HTTP: CPU of the log writer + server per run, beside the job (ms; the run takes)",
         f"{1000 * cpu['HTTP']['cpu_s']:.0f} ({cpu['HTTP']['run_s']:.2f} s)", "-"),
        ("one epoch's log_batch (26 values), make server (ms)",
         f"{1000 * latency['make server']:.1f}", "-"),
        ("one epoch's log_batch, plain `mlflow server`: uvicorn, 4 workers (ms)",
         f"{1000 * latency['mlflow server']:.1f}", "-"),
        ("per-run diagnostics figure share", share(ab["bench_logged"], ab["bench_plots"]), "-"),
        ("2 threads / 1 thread (time)", paired(ab["bench_train_2threads"], ab["bench_train"]),
         "-"),
        ("peak RSS of the process: naive / bench, training only (MB)",
         f"{ab['naive_train']['peak_rss_mb']:.0f} / {ab['bench_train']['peak_rss_mb']:.0f}", "-"),
        ("peak RSS of the process: naive / bench, with SQLite logging (MB)",
         f"{ab['naive_logged']['peak_rss_mb']:.0f} / {ab['bench_logged']['peak_rss_mb']:.0f}",
         "-"),
        ("16 seeds, 100 epochs: per-model throughput, batched (2 threads) / sequential (1 thread)",
         vec["ratio_2t"], ">= 3x"),
        ("16 seeds, 100 epochs: per-model throughput, batched (1 thread) / sequential (1 thread)",
         vec["ratio_1t"], "-"),
    ]

    if not args.skip_sweeps:
        print("24-job sweeps: basic and joblib launchers ...", flush=True)
        # SWEEP_ROUNDS rounds of the three sweeps back to back: one sweep's wall moves by up to
        # 30% between runs on this VM (24 jobs: 17.4-22.6 s in six runs), so the overhead is
        # the median of each round's own (24 jobs - 1 job) difference, not of single walls.
        rounds = [(sweep_wall(["activation=relu", "seed=0", *SWEEP[2:]], []),
                   sweep_wall(SWEEP, []),
                   sweep_wall(SWEEP, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]))
                  for _ in range(SWEEP_ROUNDS)]
        one, basic, joblib = (statistics.median(r[i] for r in rounds) for i in range(3))
        train_s = training_seconds_of_sweep_jobs()
        overhead = statistics.median((b - o) / 23 - train_s for o, b, _ in rounds)
        notes.update(one_job_sweep_s=one, basic_s=basic, joblib_s=joblib, train_s=train_s,
                     sweep_rounds=[[round(w, 1) for w in r] for r in rounds])
        print(f"  1 job {one:.1f}s, 24 jobs basic {basic:.1f}s, joblib(2) {joblib:.1f}s; "
              f"mean training {train_s:.3f}s per job", flush=True)
        rows += [
            ("sweep throughput, basic launcher (runs/min)", 24 * 60 / basic, "-"),
            ("sweep throughput, joblib n_jobs=2 (runs/min)", 24 * 60 / joblib, "-"),
            ("per-job overhead beyond training, basic launcher (s)", overhead, "< 0.3 s"),
        ]

    print()
    for name, value, target in rows:
        print(f"{name:<55} {shown(name, value):>12}   target {target}")
    notes.update({f"seeds16_{k}" + ("" if k.startswith("ratio") else "_s"): v
                  for k, v in vec.items()})
    write_readme(rows, ab, http, pairs, notes, args.reps)


def shown(name: str, value) -> str:
    """A row's value as printed: shares and slowdowns in percent, other floats to 2 places,
    anything else (already formatted text) as it is."""
    if not isinstance(value, float):
        return value
    return f"{100 * value:.1f}%" if ("share" in name or "slowdown" in name) else f"{value:.2f}"


def write_readme(rows, ab, http, pairs, notes, reps) -> None:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"Python {platform.python_version()}"
    try:
        import torch
        machine += f", torch {torch.__version__}"
    except ImportError:
        pass
    lines = ["# Benchmarks", "",
             "Regenerated by `make bench` (`python benchmarks/run.py`). Every comparison is "
             "A/B, the two sides next to each other, and a ratio or share is the median over "
             "rounds of that round's own ratio, because this VM's speed drifts by 10-20% within "
             "seconds. The targets' ratios and the logging shares come from paired rounds in "
             f"one warm process ({PAIR_ROUNDS[1]} rounds of one run each side, "
             f"{PAIR_ROUNDS[5]} of five; the side that goes first alternates): a share of a few "
             "percent is below the 5-10% by which one variant varies between fresh processes. "
             f"The per-variant medians and peak memory come from {reps} fresh processes per "
             "variant, interleaved. Compare ratios, not absolute times.", "",
             f"Machine: {machine}.", "",
             "Workload (the representative config): binary task, 4000 samples, 20 features, MLP "
             "depth 4 × width 64, batch 128, 100 epochs (1900 optimiser steps), Adam, CPU. "
             "The naive baseline is the tutorial loop: `TensorDataset` + `DataLoader`, "
             "`loss.item()` every step, an extra validation pass per epoch, and "
             "`mlflow.log_metric` for every value. Start-up (imports, the first optimiser, data "
             "generation) is excluded on both sides: each process first runs a 2-epoch warm-up of "
             "the same variant, as any job after the first in a sweep's process would be. Logged "
             "variants are timed until everything is written (the log writer drained); `_x5` "
             "variants run 5 trainings back to back in one process and wait once, as a sweep's "
             "basic launcher does. The naive-vs-bench HTTP ratio uses 30 epochs (570 steps; the "
             "naive loop's per-step requests are slow), the other HTTP rows 100. The HTTP rows "
             "log to a local server started as `make server` starts it (MLflow under gunicorn, 2 "
             "workers, SQLite backend), on the same 2 cores as the job. Two rows put the shares "
             "in scale: what a process spinning a pure-Python loop on the other core costs the "
             "training (`busy_neighbour`), and the CPU that logging takes beside the job per run "
             "(the log writer's, and the server's; read from `/proc` over 5 runs back to "
             "back).", "",
             "| measure | value | target |", "|---|---|---|"]
    for name, value, target in rows:
        lines.append(f"| {name} | {shown(name, value)} | {target} |")
    lines += ["", "Paired rounds in one process (each round's A / B; a share is 1 − A / B):",
              "", "| pair | A | B | median A / B | rounds | B's end-of-run wait share |",
              "|---|---|---|---|---|---|"]
    for k, r in pairs.items():
        lines.append(f"| {k} | {r['a']} | {r['b']} | {r['ratio']:.3f} | {r['rounds']} | "
                     f"{100 * r['end_wait']:.1f}% |")
    lines += ["", "Medians (seconds) and peak memory per variant, fresh processes:", "",
              "| variant | store | median s | all runs | end-of-run wait s | peak RSS MB |",
              "|---|---|---|---|---|---|"]
    for store, table in (("SQLite", ab), ("HTTP", http)):
        for v, r in table.items():
            lines.append(f"| {v} | {store} | {r['seconds']:.3f} | {r['all']} | "
                         f"{r['end_wait_s']:.3f} | {r['peak_rss_mb']:.0f} |")
    if notes:
        lines += ["", "Sweep (24 jobs: 4 activations × 6 seeds, 2000 samples, 20 epochs, plots "
                  "on; walls are medians of the rounds): "
                  + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in notes.items())
                  + ". Per-job overhead = the median over rounds (each round: 1-job, 24-job "
                  "basic, 24-job joblib sweep, as `sweep_rounds` lists them) of (wall(24 jobs) − "
                  "wall(1 job)) / 23 − mean training time of the same configs in a warm "
                  "process."]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
