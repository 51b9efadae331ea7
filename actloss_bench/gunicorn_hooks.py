"""gunicorn settings module for ``make server`` (``-c python:actloss_bench.gunicorn_hooks``).

Each worker, once MLflow's app is loaded, builds its SQL tracking store as
``metric_store.BulkMetricStore``: the server spends ~0.07 ms of CPU per logged value in
MLflow's ORM path, on the same machine as the jobs when it runs beside them.
"""


def post_worker_init(worker) -> None:
    from mlflow.server import handlers

    from actloss_bench import metric_store

    metric_store.register(handlers._tracking_store_registry,
                          handlers.TrackingStoreRegistryWrapper._get_sqlalchemy_store)
    if handlers._tracking_store is not None:  # built while the app loaded
        handlers._tracking_store = metric_store.bulk(handlers._tracking_store)
