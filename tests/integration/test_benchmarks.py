"""The speed benchmark compares loops, not workloads: the tutorial loop and the engine train the
same MLP from the same initial weights on the same data for the same number of steps."""

import math
import sys

import torch

from actloss_bench.engine import model
from actloss_bench.engine import training
from actloss_bench.engine.training import Member, train_population
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import run as bench  # noqa: E402
import tutorial  # noqa: E402


def test_tutorial_loop_and_engine_train_the_same_model_for_the_same_steps(monkeypatch):
    initial = []

    def recorded(make):
        def wrapper(*args, **kwargs):
            m = make(*args, **kwargs)
            initial.append({k: v.clone() for k, v in m.state_dict().items()})
            return m
        return wrapper

    monkeypatch.setattr(training, "build_model", recorded(model.build_model))
    monkeypatch.setattr(tutorial, "MLP", recorded(model.MLP))
    task = bench.task_config()
    task.n_samples = 500
    steps = tutorial.train_one(task, 0, 2, depth=4, width=64, batch_size=128)
    cfg = bench.engine_config(2)
    cfg.task.n_samples = 500
    result, = train_population(cfg, [Member(0, 1e-3)])
    assert steps == result.steps == 2 * math.ceil(300 / 128)  # 60% of 500 samples train
    assert len(initial) == 2
    assert all(torch.equal(initial[0][k], initial[1][k]) for k in initial[0])
