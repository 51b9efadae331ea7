"""Run every experiment in experiments/ at one profile, one Hydra multirun each (``make run``).

Experiments run side by side, one sweep process per core, each training its cells one after
the other (every cell is one population of seeds x learning rates, on one thread): a process's
start-up (Python, torch, Hydra, MLflow: seconds) then overlaps the other's training. The store
and every experiment in it are created first, here, because a fresh SQLite file opened by
several processes at once crashes some of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from omegaconf import OmegaConf

from actloss_bench.config.paths import EXPERIMENTS_DIR, REAL_SUFFIX, experiment_names
from actloss_bench.tracking.job import ENV_JOB_SUMMARY
from actloss_bench.tracking.sweep import count_jobs, parse_sweep


def store_uri(results: Path) -> str:
    return f"sqlite:///{results.resolve() / 'mlflow.db'}"


def sweep_size(name: str, profile: str) -> int:
    """Cells times models per cell times epochs, from the composed config (the protocol's own
    count): the longest experiments start first."""
    from hydra import compose, initialize_config_dir

    from actloss_bench.config.paths import CONF_DIR
    from actloss_bench.config.schema import register_schema
    from actloss_bench.engine.protocol import models_per_job

    register_schema()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}", f"profile={profile}"],
                      return_hydra_config=True)
    cells = count_jobs(parse_sweep(OmegaConf.select(cfg, "hydra.sweeper.params") or {}, []))
    return cells * models_per_job(cfg) * cfg.trainer.epochs


def real_data_overrides(name: str) -> list:
    """The experiment's ``claim.real_data``: overrides that re-run it on a real dataset."""
    raw = OmegaConf.load(EXPERIMENTS_DIR / f"{name}.yaml")
    return [str(o) for o in (OmegaConf.select(raw, "claim.real_data") or [])]


def run_summary(logs: Path, names, wall: float) -> dict:
    """Models, training and MLflow seconds summed over the jobs' JSON summaries
    (``<logs>/<experiment>.jobs.jsonl``, one line per job: tracking/job.py)."""
    models = train = mlflow = 0.0
    for path in (logs / f"{name}.jobs.jsonl" for name in names):
        for line in (path.read_text().splitlines() if path.is_file() else []):
            job = json.loads(line)
            models += job["models"]
            train += job["train_s"]
            mlflow += job["mlflow_s"]
    total = train + mlflow
    return {"wall_s": wall, "models": int(models), "models_per_min": models / wall * 60,
            "train_s": train, "mlflow_s": mlflow,
            "mlflow_share": mlflow / total if total else 0.0}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.cli.run_all")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--seed", type=int, default=0,
                        help="first seed of every population (default 0)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder of the store (mlflow.db, mlartifacts/) and the report")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="experiments run at once (default: one per core)")
    parser.add_argument("--verbose", action="store_true", help="every sweep's own output")
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--real", action="store_true",
                        help="run each experiment's real-data re-check (claim.real_data) "
                             "into MLflow experiment <name>_real, instead of the experiments")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="overrides passed to every sweep")
    args = parser.parse_args(argv)
    if args.seed < 0:
        sys.exit(f"run_all: error: --seed {args.seed} is not allowed; it must be an integer >= 0")
    known = experiment_names()
    for n in args.names:
        if n not in known:
            sys.exit(f"run_all: error: no experiment {n!r}; choose from: {', '.join(known)}")
    # label -> (experiment, its own overrides); a label is also the MLflow experiment.
    sweeps = {name: (name, []) for name in args.names or known}
    if args.real:
        sweeps = {f"{name}{REAL_SUFFIX}": (name, [*overrides,
                                                  f"tracking.experiment={name}{REAL_SUFFIX}"])
                  for name in sweeps for overrides in [real_data_overrides(name)] if overrides}
    sizes = {label: sweep_size(name, args.profile) for label, (name, _) in sweeps.items()}
    names = sorted(sizes, key=sizes.get, reverse=True)

    from actloss_bench.tracking import store

    uri = store_uri(args.results)
    try:
        store.check_store(uri)
    except store.TrackingError as e:
        sys.exit(f"run_all: error: {e}")
    for name in names:  # the store and the experiments, before any sweep starts
        store.ensure_experiment(uri, name)

    exe = str(Path(sys.executable).with_name("actloss-bench"))
    logs = args.results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running = list(names), {}
    failed, done, done_size, started_all = [], 0, 0, time.perf_counter()
    print(f"{len(names)} experiments, {args.jobs} at a time; sweep logs in {logs}/", flush=True)
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                name = waiting.pop(0)
                log = open(logs / f"{name}.log", "w")
                (logs / f"{name}.jobs.jsonl").unlink(missing_ok=True)
                experiment, overrides = sweeps[name]
                env = {**os.environ, ENV_JOB_SUMMARY: str(logs / f"{name}.jobs.jsonl"),
                       **({"MLFLOW_LOGGING_LEVEL": "INFO"} if args.verbose else {})}
                proc = subprocess.Popen(
                    [exe, "-m", f"experiment={experiment}", f"profile={args.profile}",
                     f"seed={args.seed}", f"tracking.uri={uri}", *overrides, *args.extra],
                    stdout=None if args.verbose else log, stderr=subprocess.STDOUT, env=env)
                running[name] = (proc, log, time.perf_counter())
            time.sleep(0.2)
            for name, (proc, log, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                done += 1
                lines = (logs / f"{name}.log").read_text().splitlines()
                summary = next((ln for ln in lines if ln.startswith("sweep ")), "")
                elapsed = time.perf_counter() - started_all
                done_size += sizes[name]  # time left, guessed from the work left
                left = elapsed / done_size * (sum(sizes.values()) - done_size)
                print(f"[{done}/{len(names)}] {name}: exit {proc.returncode} in "
                      f"{time.perf_counter() - started:.0f}s; {summary.split(': ', 1)[-1]} "
                      f"({elapsed:.0f}s elapsed, ~{left:.0f}s left)", flush=True)
                for line in lines:  # failures and skipped cells are always shown
                    if line.startswith(("[failed]", "[skipped]", "actloss-bench: error")):
                        print(f"    {line}")
                if proc.returncode != 0:
                    failed.append(name)
                    print("\n".join(f"    {ln}" for ln in lines[-15:]))
    except KeyboardInterrupt:  # Ctrl-C reached the sweeps too: let them record it, then stop
        for proc, log, _ in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        print(f"run_all: interrupted: {done} of {len(names)} experiments done; finished cells "
              "are kept, the same command again runs the rest", file=sys.stderr)
        sys.exit(130)
    wall = time.perf_counter() - started_all
    summary = run_summary(logs, names, wall)
    (logs / "run_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"all experiments in {wall:.0f}s: {summary['models']} models "
          f"({summary['models_per_min']:.0f} per minute); of the jobs' time, training "
          f"{summary['train_s']:.0f}s, MLflow and bookkeeping {summary['mlflow_s']:.0f}s "
          f"({100 * summary['mlflow_share']:.1f}%)", flush=True)
    if failed:
        sys.exit(f"experiments that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
