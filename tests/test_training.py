"""The training loop itself: determinism, divergence as data, invalid cells refused early."""

import math

import pytest

from actloss_bench.training import DIVERGED, OK, InvalidCombination, train


def test_same_seed_same_numbers(make_cfg):
    a = train(make_cfg("seed=3"))
    b = train(make_cfg("seed=3"))
    c = train(make_cfg("seed=4"))
    assert a.history == b.history and a.test == b.test
    assert a.history != c.history


def test_history_has_the_design_metric_names(make_cfg):
    r = train(make_cfg("model.depth=3", "activation=tanh"))
    keys = set(r.final)
    for name in ["train/loss", "val/loss", "val/accuracy", "val/balanced_accuracy", "val/f1_macro",
                 "val/roc_auc", "val/pr_auc", "val/ece", "val/ece_positive", "val/brier",
                 "val/nll", "val/pred_majority_fraction", "dead/fraction", "dead/layer_0",
                 "dead/layer_2", "saturation/fraction", "grad_norm/layer_0", "grad_norm/layer_3",
                 "grad_norm/ratio_first_last"]:
        assert name in keys, name
    assert len(r.history) == 4 and r.status == OK
    assert {"test/accuracy", "test/ece", "test/nll"} <= set(r.test)
    assert list(r.predictions.columns) == ["target", "prediction", "prob_0", "prob_1"]


def test_regression_metrics(make_cfg):
    r = train(make_cfg("task=regression", "loss=mse"))
    assert {"val/mae", "val/rmse", "val/r2"} <= set(r.final) and "test/r2" in r.test
    assert list(r.predictions.columns) == ["target", "prediction"]


def test_divergence_is_recorded_not_raised(make_cfg):
    r = train(make_cfg("loss=naive_bce", "model.init=normal", "model.init_scale=30",
                       "activation=identity", "model.depth=3"))
    assert r.status == DIVERGED
    assert r.diverged_at_step is not None and 1 <= r.diverged_at_step <= r.steps
    assert "diverged" in r.diagnoses and r.test == {}


def test_divergence_step_is_the_first_non_finite_step(make_cfg):
    # Same run with 1 epoch: the first bad step cannot move when later epochs are added.
    one = train(make_cfg("loss=naive_bce", "model.init=normal", "model.init_scale=30",
                         "activation=identity", "model.depth=3", "trainer.epochs=1"))
    assert one.status == DIVERGED and one.diverged_at_step <= math.ceil(240 / 128)


def test_invalid_combination_is_refused_before_training(make_cfg):
    with pytest.raises(InvalidCombination, match="BCELoss needs probabilities"):
        train(make_cfg("loss=bce", "head=linear"))


@pytest.mark.parametrize("overrides", [
    [],  # binary, bce_with_logits
    ["task=multiclass", "loss=ce"],
    ["task=multiclass", "loss=mse"],
    ["task=regression", "loss=mse", "trainer.grad_clip=0.5"],
])
def test_closed_form_output_gradient_trains_exactly_as_autograd(make_cfg, monkeypatch, overrides):
    from actloss_bench import losses
    from actloss_bench.vectorized import train_seeds

    cfg = make_cfg(*overrides)
    assert losses.closed_form_gradient(cfg.loss, cfg.head.name) is not None
    fast, fast_seeds = train(cfg), train_seeds(cfg, [0, 1])
    monkeypatch.setattr(losses, "CLOSED_FORM_GRADIENTS", {})
    assert losses.closed_form_gradient(cfg.loss, cfg.head.name) is None
    slow, slow_seeds = train(cfg), train_seeds(cfg, [0, 1])
    for a, b in [(fast, slow), *zip(fast_seeds, slow_seeds)]:
        assert a.history == b.history  # every logged number, bit for bit
        assert a.test == b.test
