"""MLflow's SQL tracking store with metrics written as one bulk insert per batch.

MLflow's ``SqlAlchemyStore`` logs a batch of metrics as ORM objects: one ``SqlMetric`` per
value, flushed by the unit of work, then each value compared in turn with the key's
latest-metric row. Measured here on SQLite, a 364-value ``log_batch`` (0.1 s of a run's epochs)
took 42.7 ms, ~0.1 ms per value, so one run's ~2,600 values cost its log writer ~0.3 s of CPU
on the core next to the training. ``BulkMetricStore`` keeps MLflow's validation, duplicate
handling and latest-metric rule (a key's latest is its value of the largest ``(step,
timestamp, value)``, first one kept on ties) but inserts the batch's rows in one ``INSERT``
(``executemany``) and compares only each key's largest new value with the stored latest
(the same outcome: the latest is a maximum). A batch that collides with rows already stored
(MLflow's duplicate case) goes through MLflow's own path. Reads are MLflow's, unchanged.

``register()`` makes it the store for SQL URIs in this process (the jobs, the log writer);
``make server`` registers it in each server worker (``actloss_bench/gunicorn_hooks.py``).
Tests compare every table it writes with MLflow's own store.
"""

from __future__ import annotations

import sqlalchemy
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking._tracking_service import utils as tracking_utils


class BulkMetricStore(SqlAlchemyStore):
    """``SqlAlchemyStore`` whose ``log_batch`` inserts metrics in bulk (see the module)."""

    def _log_metrics_once(self, run_id, metrics):
        if len(metrics) < 2:  # log_metric: MLflow's path, nothing to batch
            return super()._log_metrics_once(run_id, metrics)
        # Only log_batch sends several metrics here, and it has validated each of them already
        # (MLflow's path validates them a second time: ~0.01 ms per value).
        rows, seen = [], set()
        latest = {}  # key -> the row with the largest (step, timestamp, value) in this batch
        for metric in metrics:
            if metric in seen:
                continue
            seen.add(metric)
            is_nan, value = self.sanitize_metric_value(metric.value)
            row = {"run_uuid": run_id, "key": metric.key, "value": value,
                   "timestamp": metric.timestamp, "step": metric.step, "is_nan": is_nan}
            rows.append(row)
            best = latest.get(metric.key)
            if best is None or _order(row) > _order(best):
                latest[metric.key] = row
        with self.ManagedSessionMaker(read_only=False) as session:
            run = self._get_run(run_uuid=run_id, session=session)
            self._check_run_is_active(run)
            try:
                # A Core insert of the table: one executemany, no ORM unit of work.
                session.execute(sqlalchemy.insert(SqlMetric.__table__), rows)
                self._update_latest_metrics_if_necessary(
                    [SqlMetric(**row) for row in latest.values()], session)
                session.commit()
                return None
            except sqlalchemy.exc.IntegrityError:
                session.rollback()
        # Some of these values are stored already: MLflow's path skips exactly those.
        return super()._log_metrics_once(run_id, metrics)


def _order(row):
    """MLflow's recency order for a key's latest value."""
    return (row["step"], row["timestamp"], row["value"])


def bulk(store):
    """``store`` as a ``BulkMetricStore`` when it is MLflow's plain ``SqlAlchemyStore`` (the
    subclass adds no state, so re-classing a built store avoids opening the database twice);
    any other store (workspace-aware, REST, file) is returned as it is."""
    if type(store) is SqlAlchemyStore:
        store.__class__ = BulkMetricStore
    return store


def register(registry=None, builder=None) -> None:
    """Build SQL stores as ``BulkMetricStore`` in this process from now on: in MLflow's client
    registry (the one ``MlflowClient`` asks) by default, or in ``registry`` (the tracking
    server's) with that registry's own ``builder``."""
    if registry is None:
        registry, builder = tracking_utils._tracking_store_registry, \
            tracking_utils._get_sqlalchemy_store
    if getattr(registry, "_actloss_bulk", False):
        return
    for scheme in DATABASE_ENGINES:
        registry.register(scheme, lambda store_uri, artifact_uri: bulk(
            builder(store_uri, artifact_uri)))
    registry._actloss_bulk = True
