"""``make ui``: print the address of each experiment's model runs in the MLflow UI.

Each address opens the shared runs view that a sweep saved (tracking/view.py) with
``workflowType=machine_learning``, which keeps MLflow 3 from opening on its GenAI overview.
"""

from __future__ import annotations

import argparse
from typing import List

from actloss_bench.tracking.view import VIEW_KEY, VIEW_TAG


def address(base: str, experiment_id: str) -> str:
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?"
            f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning")


def experiment_addresses(uri: str, base: str) -> List[str]:
    """One line per experiment of the store that has runs: its name and its address."""
    from actloss_bench.tracking.store import mlflow_client

    client = mlflow_client(uri)
    lines = []
    for exp in sorted(client.search_experiments(), key=lambda e: e.name):
        if VIEW_TAG in exp.tags:
            lines.append(f"  {exp.name:<28} {address(base, exp.experiment_id)}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.ops.ui")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    lines = experiment_addresses(args.uri, base)
    print(f"open {base}/#/experiments?workflowType=machine_learning"
          + (", or an experiment's model runs:" if lines else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
