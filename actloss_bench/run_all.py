"""Run every experiment in experiments/ at one profile, one Hydra multirun each (``make run``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from actloss_bench.paths import EXPERIMENTS_DIR


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.run_all")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="overrides passed to every sweep, e.g. hydra/launcher=joblib")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    exe = str(Path(sys.executable).with_name("actloss-bench"))
    failed = []
    for name in names:
        started = time.perf_counter()
        print(f"== experiment {name} (profile {args.profile})", flush=True)
        code = subprocess.call([exe, "-m", f"experiment={name}", f"profile={args.profile}",
                                *args.extra])
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        sys.exit(f"experiments that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
