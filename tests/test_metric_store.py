"""BulkMetricStore writes exactly the rows MLflow's own SQL store writes."""

import sqlite3

import pytest
from mlflow.entities import Metric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from actloss_bench import tracking
from actloss_bench.metric_store import BulkMetricStore

BATCHES = [
    # one epoch's worth of keys, then several epochs in one batch
    [Metric(f"val/m{i}", 0.1 * i, 1000, 1) for i in range(5)],
    [Metric(f"val/m{i}", 0.2 * i + e, 1000 + e, 2 + e) for e in range(4) for i in range(5)],
    # NaN and 0 at the same step and time (a tie after NaN is stored as 0), an older step,
    # +inf, and a value repeated within the batch
    [Metric("a", float("nan"), 5, 1), Metric("a", 0.0, 5, 1), Metric("a", 2.0, 4, 0),
     Metric("b", float("inf"), 1, 3), Metric("b", 1.0, 1, 3), Metric("b", 1.0, 1, 3)],
    # older than the stored latest: history grows, latest stays
    [Metric("a", -1.0, 1, 0), Metric("val/m1", 9.0, 1, 1), Metric("c", 3.0, 2, 2)],
    # a value already stored (the duplicate path) beside a new latest for the same key
    [Metric("c", 3.0, 2, 2), Metric("c", 4.0, 2, 2)],
    # one metric: MLflow's path
    [Metric("d", 1.0, 1, 1)],
]


def _tables(db):
    with sqlite3.connect(db) as con:
        return [sorted(con.execute(f"select key, value, timestamp, step, is_nan from {t}"))
                for t in ("metrics", "latest_metrics")]


@pytest.fixture
def stores(tmp_path):
    made = {}
    for cls in (SqlAlchemyStore, BulkMetricStore):
        store = cls(f"sqlite:///{tmp_path}/{cls.__name__}.db", str(tmp_path / "art"))
        exp = store.create_experiment("x")
        made[cls] = (store, store.create_run(exp, "u", 0, [], "r").info.run_id,
                     tmp_path / f"{cls.__name__}.db")
    return made


def test_bulk_store_writes_the_same_history_and_latest_values_as_mlflow(stores):
    for batch in BATCHES:
        for store, run_id, _ in stores.values():
            store.log_batch(run_id, batch, [], [])
    mlflow_rows = _tables(stores[SqlAlchemyStore][2])
    bulk_rows = _tables(stores[BulkMetricStore][2])
    assert bulk_rows == mlflow_rows
    history, latest = bulk_rows
    assert len(history) == 35 and len(latest) == 9  # one in-batch repeat, one stored one
    assert ("c", 4.0, 2, 2, 0) in latest and ("a", 0.0, 5, 1, 1) in latest


@pytest.mark.parametrize("cls", [SqlAlchemyStore, BulkMetricStore])
def test_bulk_store_refuses_what_mlflow_refuses(stores, cls):
    store, run_id, _ = stores[cls]
    with pytest.raises(Exception, match="Invalid value"):
        store.log_batch(run_id, [Metric("a", "x", 1, 1), Metric("b", 1.0, 1, 1)], [], [])
    store.delete_run(run_id)
    with pytest.raises(Exception, match="must be in the 'active' state"):
        store.log_batch(run_id, [Metric("a", 1.0, 1, 1), Metric("b", 1.0, 1, 1)], [], [])


def test_clients_of_sql_stores_get_the_bulk_store(tmp_path):
    client = tracking._client(f"sqlite:///{tmp_path}/m.db")
    assert type(client._tracking_client.store) is BulkMetricStore


def test_sql_schemes_are_mlflows_database_engines():
    from mlflow.store.db.db_types import DATABASE_ENGINES

    assert sorted(tracking.SQL_SCHEMES) == sorted(DATABASE_ENGINES)
    assert tracking.is_sql_uri("sqlite:///x.db") and tracking.is_sql_uri("postgresql+psycopg2://h/d")
    assert not tracking.is_sql_uri("http://127.0.0.1:5000")
