"""``make bench``: what populations buy, as ratios measured in one run against the naive loop.

1. Training per model: the tutorial loop (benchmarks/tutorial.py) against the engine training
   one model, and populations of 16 and 64 seeds (actloss_bench.engine.training.train_population).
   Each is timed in this one warm process, in rounds that alternate the order; a ratio is the
   median over rounds of that round's own ratio (this VM's speed drifts within seconds).
2. Whole processes: 16 seeds as one ``actloss-bench seeds=16`` process against 16 tutorial-loop
   processes (each logging its per-epoch losses to MLflow with ``log_metric``), both into SQLite
   and both at torch's default number of threads.
3. ``make run``: models per minute and the share of its time spent in MLflow, from the summary
   the last ``make run`` wrote (``results/logs/run_summary.json``).

Writes benchmarks/README.md. Compare ratios, not absolute times: these machines are noisy.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

# The workload of the speed issue: binary task, 4000 samples, 20 features, MLP depth 4 x width
# 64, batch 128, Adam at lr 1e-3, CPU, one thread.
WORKLOAD = {"task": {"name": "binary", "n_samples": 4000, "n_features": 20, "noise": 0.05},
            "depth": 4, "width": 64, "batch_size": 128}
OVERRIDES = ["task=binary", "task.n_samples=4000", "task.n_features=20", "model.depth=4",
             "model.width=64", "trainer.batch_size=128", "optimizer=adam", "trainer.device=cpu",
             "trainer.threads=1"]


def engine_config(epochs: int):
    from hydra import compose, initialize_config_dir

    from actloss_bench.config.paths import CONF_DIR
    from actloss_bench.config.schema import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"trainer.epochs={epochs}"])


def task_config():
    from actloss_bench.config.schema import TaskConfig

    return OmegaConf.merge(OmegaConf.structured(TaskConfig), WORKLOAD["task"])


def per_model_seconds(epochs: int, rounds: int) -> dict:
    """Seconds per model of each variant, per round (alternating the order)."""
    from tutorial import train_one

    from actloss_bench.engine.training import Member, train_population

    cfg, task = engine_config(epochs), task_config()
    variants = {
        "tutorial loop": lambda: train_one(task, 0, epochs, depth=WORKLOAD["depth"],
                                           width=WORKLOAD["width"],
                                           batch_size=WORKLOAD["batch_size"]) and 1,
        "engine, 1 model": lambda: len(train_population(cfg, [Member(0, 1e-3)])),
        "population of 16": lambda: len(train_population(cfg, [Member(s, 1e-3)
                                                               for s in range(16)])),
        "population of 64": lambda: len(train_population(cfg, [Member(s, 1e-3)
                                                               for s in range(64)])),
    }
    torch.set_num_threads(1)
    for run in variants.values():  # warm-up: imports, allocator, first optimiser
        run()
    out = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            models = variants[name]()
            out[name].append((time.perf_counter() - started) / models)
    return out


def whole_processes(epochs: int, seeds: int) -> dict:
    """Wall seconds of ``seeds`` tutorial processes one after the other, and of one
    ``actloss-bench seeds=<seeds>`` process, each into a fresh SQLite store."""
    exe = Path(sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/tutorial.db"
        subprocess.run([str(exe), str(ROOT / "benchmarks" / "tutorial.py"), "0", "1", uri],
                       check=True, capture_output=True)  # creates the store first
        started = time.perf_counter()
        for s in range(seeds):
            subprocess.run([str(exe), str(ROOT / "benchmarks" / "tutorial.py"), str(s),
                            str(epochs), uri], check=True, capture_output=True)
        tutorial = time.perf_counter() - started
        started = time.perf_counter()
        # Both sides at torch's default threads (the tutorial never sets them).
        subprocess.run([str(exe.with_name("actloss-bench")), *OVERRIDES, "trainer.threads=null",
                        f"trainer.epochs={epochs}", f"seeds={seeds}",
                        f"tracking.uri=sqlite:///{tmp}/bench.db",
                        f"hydra.run.dir={tmp}/run"], check=True, capture_output=True, cwd=ROOT)
        bench = time.perf_counter() - started
    return {"tutorial": tutorial, "bench": bench}


def single_run(epochs: int) -> dict:
    """Wall seconds of one tutorial process and of one ``actloss-bench`` one-model process
    (default logging: about 25 points per curve), each into a fresh SQLite store that is
    created first, so both pay the same store set-up."""
    exe = Path(sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/tutorial.db"
        subprocess.run([str(exe), str(ROOT / "benchmarks" / "tutorial.py"), "0", "1", uri],
                       check=True, capture_output=True)
        bench_uri = f"sqlite:///{tmp}/bench.db"
        subprocess.run([str(exe.with_name("actloss-bench")), *OVERRIDES, "trainer.epochs=1",
                        "seed=99", f"tracking.uri={bench_uri}", f"hydra.run.dir={tmp}/run"],
                       check=True, capture_output=True, cwd=ROOT)
        started = time.perf_counter()
        subprocess.run([str(exe), str(ROOT / "benchmarks" / "tutorial.py"), "0", str(epochs),
                        uri], check=True, capture_output=True)
        tutorial = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([str(exe.with_name("actloss-bench")), *OVERRIDES, "trainer.threads=null",
                        f"trainer.epochs={epochs}", f"tracking.uri={bench_uri}",
                        f"hydra.run.dir={tmp}/run"], check=True, capture_output=True, cwd=ROOT)
        bench = time.perf_counter() - started
    return {"tutorial": tutorial, "bench": bench}


def main() -> None:
    epochs, rounds = 30, 3
    print(f"training per model, {epochs} epochs, {rounds} rounds ...", flush=True)
    per_model = per_model_seconds(epochs, rounds)
    base = per_model["tutorial loop"]
    rows = []
    for name, times in per_model.items():
        ratio = statistics.median(b / t for b, t in zip(base, times))
        if name != "tutorial loop":
            rows.append((f"training per model, one thread: tutorial loop / {name}",
                         f"{ratio:.2f}x", "-"))
        print(f"  {name}: {statistics.median(times):.3f} s per model, {ratio:.2f}x", flush=True)
    print("16 seeds as whole processes ...", flush=True)
    procs = whole_processes(epochs, 16)
    ratio = procs["tutorial"] / procs["bench"]
    rows.append(("16 seeds, whole processes with MLflow logging: 16 tutorial processes / one "
                 "`seeds=16` process", f"{ratio:.2f}x", ">= 8x"))
    print(f"  16 tutorial processes {procs['tutorial']:.1f} s, seeds=16 {procs['bench']:.1f} s: "
          f"{ratio:.2f}x", flush=True)
    print("one 300-epoch run as whole processes ...", flush=True)
    single = single_run(300)
    ratio = single["tutorial"] / single["bench"]
    rows.append(("one 300-epoch run, whole processes with MLflow logging: tutorial process / "
                 "`actloss-bench` process", f"{ratio:.2f}x", ">= 1.5x"))
    print(f"  tutorial {single['tutorial']:.1f} s, actloss-bench {single['bench']:.1f} s: "
          f"{ratio:.2f}x", flush=True)
    summary_path = ROOT / "results" / "logs" / "run_summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        rows += [("`make run` (last run): the experiments' wall time (without the report)",
                  f"{s['wall_s'] / 60:.1f} min", "<= 12 min with the report"),
                 ("`make run` (last run): models per minute", f"{s['models_per_min']:.0f}", "-"),
                 ("`make run` (last run): share of job time in MLflow",
                  f"{100 * s['mlflow_share']:.1f}%", "< 10%")]
    lines = ["# Benchmarks", "",
             "Regenerated by `make bench` (`python benchmarks/run.py`); ratios measured in one "
             "run. Training per model: each variant in one warm process, "
             f"{rounds} rounds alternating the order, the median of each round's own ratio. "
             "Whole processes: start-up, data, training and MLflow logging included. The "
             "`make run` rows come from the summary the last `make run` wrote.", "",
             f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s) used "
             f"of {__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
             f"torch {torch.__version__}.", "",
             f"Workload: binary task, 4000 samples, 20 features, MLP depth 4 x width 64, "
             f"batch 128, {epochs} epochs, Adam, CPU. The tutorial loop: "
             "`TensorDataset` + `DataLoader(shuffle=True)`, `loss.item()` every step, a "
             "validation pass per epoch (and, as a whole process, `mlflow.log_metric` per "
             "epoch). The engine: every diagnostic of docs/tracking.md every epoch.", "",
             "| measure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows] + [""]
    (ROOT / "benchmarks" / "README.md").write_text("\n".join(lines))
    print("wrote benchmarks/README.md")


if __name__ == "__main__":
    main()
