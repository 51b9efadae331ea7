"""Write a report back to MLflow, where reviewers look: the experiment's description (claim
and verdict), the page and its figures as artifacts of the sweep's parent run, and the runs
view's columns (the sweep's axes and the claim's metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from actloss_bench.tracking.store import mlflow_client
from actloss_bench.tracking.view import key_metrics, write_runs_view


def publish(report, entry: Dict[str, str], page_dir: Path) -> None:
    table, claim = report.table, report.spec["claim"]
    client = mlflow_client(table.uri)
    client.set_experiment_tag(
        table.experiment_id, "mlflow.note.content",
        f"{claim.get('text', '').strip()}\n\n**Verdict: {entry['word']}** (parts: "
        f"{entry['parts']}; effect it rests on: {entry['effect']}; {entry['seeds']} seeds per "
        f"cell)")
    client.log_artifacts(table.sweep_run_id, str(page_dir), "report")
    kinds = [kind for kind, metric in (("regression", "test/rmse"),
                                       ("multilabel", "test/subset_accuracy"),
                                       ("classification", "test/accuracy"))
             if metric in table.models]
    write_runs_view(client, table.experiment_id, table.varying_params(),
                    key_metrics(kinds, [r["metric"] for r in report.spec["verdict"]
                                        .get("rules", [])]))
