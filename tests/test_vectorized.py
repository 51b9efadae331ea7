"""Seeds trained as one batched model follow the sequential path, and log as sequential runs."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from actloss_bench.schema import ConfigError
from actloss_bench.training import train
from actloss_bench.vectorized import config_for_seed, train_seeds
from conftest import run_cli


@pytest.mark.parametrize("overrides", [
    [],
    ["activation=tanh", "task=multiclass", "loss=ce", "trainer.grad_clip=0.5", "model.depth=3"],
    ["task=regression", "loss=huber", "optimizer=sgd", "optimizer.momentum=0.9"],
    ["loss=naive_bce", "model.init=normal", "model.init_scale=30", "activation=identity"],
])
def test_batched_seeds_match_sequential_runs(make_cfg, overrides):
    cfg = make_cfg(*overrides)
    seeds = [0, 1, 2]
    batched = train_seeds(cfg, seeds)
    for seed, b in zip(seeds, batched):
        s = train(config_for_seed(cfg, seed))
        assert (b.status, b.diverged_at_step, b.steps) == (s.status, s.diverged_at_step, s.steps)
        assert b.diagnoses == s.diagnoses
        assert len(b.history) == len(s.history)
        for hb, hs in zip(b.history, s.history):
            assert hb.keys() == hs.keys()
            np.testing.assert_allclose([hb[k] for k in hs], [hs[k] for k in hs],
                                       rtol=1e-4, atol=1e-6)
        assert b.test.keys() == s.test.keys()
        np.testing.assert_allclose(list(b.test.values()), list(s.test.values()),
                                   rtol=1e-4, atol=1e-6)


def test_class_weights_are_refused_in_one_line(make_cfg):
    with pytest.raises(ConfigError, match="vectorize_seeds needs loss.class_weight=none"):
        train_seeds(make_cfg("loss.class_weight=balanced"), [0, 1])


@pytest.mark.slow
def test_vectorized_job_logs_one_sequential_run_per_seed(tmp_path, store, small):
    run_cli("actloss-bench", "trainer.vectorize_seeds=3", *small, f"tracking.uri={store}")
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("actloss_bench")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2"]
    assert all(r.data.params["trainer.vectorize_seeds"] == "1" for r in runs)
    assert all(r.data.tags["vectorized_with"] == "3" and r.data.tags["status"] == "ok"
               for r in runs)
    # The same seeds as ordinary jobs are the same jobs: a sequential sweep finds them done.
    again = run_cli("actloss-bench", "-m", "seed=0,1,2", *small, f"tracking.uri={store}",
                    f"hydra.sweep.dir={tmp_path}/s")
    assert again.stdout.count("[done]") == 3
