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


