"""``actloss-matrix``: the task x head x loss compatibility matrix, with each cell's reason."""

from __future__ import annotations

import argparse
import os
import sys

from actloss_bench.engine.compat import CANONICAL, INVALID, MISTAKE, matrix_rows
from actloss_bench.engine.tasks import KINDS, TARGET_SCALINGS


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="actloss-matrix",
        description="Print the task x head x loss compatibility matrix.")
    parser.add_argument("--kind", choices=KINDS, help="only this task kind")
    parser.add_argument("--verdict", choices=(CANONICAL, MISTAKE, INVALID), help="only these")
    parser.add_argument("--scaling", choices=TARGET_SCALINGS, default="standard",
                        help="regression: task.target_scaling (bounded heads fit some)")
    args = parser.parse_args(argv)
    try:
        print(f"{'kind':<11} {'head':<12} {'loss':<19} {'verdict':<10} reason")
        for kind, head, loss, verdict, reason in matrix_rows(args.scaling):
            if (args.kind or kind) == kind and (args.verdict or verdict) == verdict:
                print(f"{kind:<11} {head:<12} {loss:<19} {verdict:<10} {reason}")
        sys.stdout.flush()
    except BrokenPipeError:  # `actloss-matrix | head` ends quietly (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
