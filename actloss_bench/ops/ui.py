"""The MLflow UI as reviewers use it: an address per experiment that lands on its model runs,
flat (not folded under the sweep's parent run), with the swept params and the key metrics as
columns, with nothing to configure.

MLflow keeps the runs table's columns in the browser's local storage, except for a *shared
view*: an experiment tag ``mlflow.sharedViewState.<key>`` holding the view's state as JSON,
opened by ``?viewStateShareKey=<key>`` (the UI's own "Share" button writes the same tag).
Each sweep writes that view (:func:`write_runs_view`); ``make ui`` prints the addresses
(:func:`experiment_addresses`). ``workflowType=machine_learning`` keeps MLflow 3 from opening
on its GenAI overview.
"""

from __future__ import annotations

import argparse
import json
from typing import Dict, Iterable, List, Sequence

VIEW_KEY = "runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# Every model run carries a job_key; the sweep's parent and the cell runs do not, so the table
# lists the model runs themselves instead of one folded parent run.
MODEL_RUNS = "tags.job_key LIKE '%'"
KEY_METRICS = {
    "classification": ["test/balanced_accuracy", "test/accuracy", "test/ece", "test/nll"],
    "regression": ["test/rmse", "test/mae", "test/r2"],
    "multilabel": ["test/f1_macro", "test/subset_accuracy", "test/hamming_loss", "test/ece"],
}
KEY_TAGS = ["status", "diagnosis"]


def column(kind: str, key: str) -> str:
    """The runs table's column id: ``metrics.`test/rmse```, ``params.`activation```."""
    return f"{kind}.`{key}`"


def view_state(swept: Sequence[str], metrics: Sequence[str]) -> Dict[str, object]:
    params = [k for k in swept if k not in ("seed", "seeds")] + ["seed"]
    columns = ([column("params", p) for p in dict.fromkeys(params)]
               + [column("metrics", m) for m in dict.fromkeys(metrics)]
               + [column("tags", t) for t in KEY_TAGS])
    return {"searchFilter": MODEL_RUNS, "orderByKey": column("params", params[0]),
            "orderByAsc": True, "selectedColumns": columns}


def key_metrics(kinds: Iterable[str], claim_metrics: Iterable[str] = ()) -> List[str]:
    """The claim's own test metrics first, then the usual ones of each task kind swept."""
    out = [m for m in claim_metrics if m.startswith(("test/", "val/"))]
    for kind in kinds:
        out += KEY_METRICS.get(kind, KEY_METRICS["classification"])
    return list(dict.fromkeys(out))


def write_runs_view(client, experiment_id: str, swept: Sequence[str],
                    metrics: Sequence[str]) -> None:
    client.set_experiment_tag(experiment_id, VIEW_TAG,
                              json.dumps(view_state(swept, metrics)))


def address(base: str, experiment_id: str) -> str:
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?"
            f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning")


def experiment_addresses(uri: str, base: str) -> List[str]:
    """One line per experiment of the store that has runs: its name and its address."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
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
