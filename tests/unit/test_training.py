"""The training loop itself: determinism, divergence as data, invalid cells refused early."""

import math

import pytest

from actloss_bench.engine.training import (DIVERGED, OK, InvalidCombination, Member, train,
                                    train_population)


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


def test_a_gaussian_model_scores_its_own_variance_and_mse_its_validation_error(make_cfg):
    gauss = train(make_cfg("task=heteroscedastic", "loss=gaussian_nll"))
    # Standardised targets: the loss is the NLL metric itself.
    assert gauss.test["test/nll"] == pytest.approx(gauss.test["test/loss"], rel=1e-4)
    assert list(gauss.predictions.columns) == ["target", "prediction", "variance"]
    assert gauss.predictions["variance"].std() > 0  # the variance depends on the input
    mse = train(make_cfg("task=heteroscedastic", "loss=mse"))
    width = 2 * 1.6448536269514722 * mse.final["val/rmse"]  # one variance: validation's MSE
    assert mse.test["test/interval_width_90"] == pytest.approx(width, rel=1e-4)
    assert 0 <= mse.test["test/coverage_90"] <= 1


def test_metrics_are_in_standardised_units_whatever_the_target_scaling(make_cfg):
    raw = train(make_cfg("task=bounded_regression", "task.target_high=1000",
                         "task.target_scaling=none", "loss=mse"))
    assert raw.test["test/loss"] > 1000  # the loss is in the model's (raw) units
    assert raw.test["test/rmse"] < 5  # the metric in units of the targets' sd
    assert raw.predictions["target"].abs().max() < 5


def test_multilabel_balanced_weights_need_bce_with_logits(make_cfg):
    with pytest.raises(InvalidCombination, match="pos_weight only"):
        train(make_cfg("task=multilabel", "loss=focal", "loss.class_weight=balanced"))


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


def _close(a, b):
    assert a.status == b.status and len(a.history) == len(b.history)
    for x, y in zip(a.history + [a.test], b.history + [b.test]):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-5, nan_ok=True), k


@pytest.mark.parametrize("overrides", [
    [],  # binary, bce_with_logits
    ["task=multiclass", "loss=ce", "loss.class_weight=balanced"],
    ["task=imbalanced", "loss=bce_with_logits", "loss.class_weight=balanced"],
    ["task=multiclass", "head=softmax", "loss=mse", "activation=tanh"],
    ["task=regression", "loss=huber", "trainer.grad_clip=0.5", "optimizer=sgd"],
    ["task=multilabel", "loss=bce_with_logits", "loss.class_weight=balanced"],
    ["task=heteroscedastic", "loss=gaussian_nll"],
    ["task=bounded_regression", "task.target_scaling=unit", "head=sigmoid", "loss=mse"],
])
def test_a_population_trains_each_model_as_it_would_train_alone(make_cfg, overrides):
    cfg = make_cfg(*overrides)
    members = [Member(s, lr) for lr in (1e-3, 1e-2) for s in (0, 1, 2)]
    together = train_population(cfg, members)
    for m, result in zip(members, together):
        _close(result, train_population(cfg, [m])[0])
    assert together[0].history != together[1].history  # seeds differ
    assert together[0].history != together[3].history  # learning rates differ


def test_one_model_matches_the_textbook_loop(make_cfg):
    """K = 1 is the ordinary nn.Module + torch.optim loop on the same data and batches."""
    import torch
    from actloss_bench.engine.model import build_model
    from actloss_bench.engine.tasks import make_dataset

    cfg = make_cfg("trainer.grad_clip=1.0", "model.depth=2")
    result = train(cfg)
    data = make_dataset(cfg.task, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, in_dim=data.n_features, out_dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    y = data.y_train.float()[:, None]
    for _ in range(cfg.trainer.epochs):
        perm = torch.randperm(len(y), generator=gen)
        for idx in perm.split(cfg.trainer.batch_size):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(data.X_train[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    with torch.no_grad():
        p = torch.sigmoid(model(data.X_test))[:, 0].numpy()
    assert result.predictions["prob_1"].to_numpy() == pytest.approx(p, abs=1e-5)


def test_a_diverging_model_leaves_the_others_untouched(make_cfg):
    cfg = make_cfg("loss=naive_bce", "activation=identity", "optimizer=sgd",
                   "trainer.epochs=6")
    calm, wild = Member(0, 0.01), Member(0, 1e4)
    together = train_population(cfg, [calm, wild])
    assert together[1].status == DIVERGED and together[1].diverged_at_step is not None
    _close(together[0], train_population(cfg, [calm])[0])
    assert together[0].status == OK


def test_per_model_clipping_is_torchs_clip_grad_norm():
    import torch
    from actloss_bench.engine.training import clip_per_model

    weights = [torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 1, 5, requires_grad=True)]
    for w in weights:
        w.grad = torch.randn_like(w) * torch.tensor([0.01, 1.0, 10.0]).view(3, 1, 1)
    expected = []
    for k in range(3):
        alone = [w.detach()[k].clone().requires_grad_() for w in weights]
        for a, w in zip(alone, weights):
            a.grad = w.grad[k].clone()
        torch.nn.utils.clip_grad_norm_(alone, 0.5)
        expected.append([a.grad for a in alone])
    clip_per_model(weights, 0.5)
    for k in range(3):
        for w, e in zip(weights, expected[k]):
            torch.testing.assert_close(w.grad[k], e)


def test_sixteen_seeds_as_one_population_match_sixteen_single_runs(make_cfg):
    """`seeds: 16` trains 16 models in one population; each matches its seed trained alone."""
    cfg = make_cfg("trainer.epochs=2", "task.n_samples=200")
    members = [Member(s, cfg.optimizer.lr) for s in range(16)]
    for m, result in zip(members, train_population(cfg, members)):
        _close(result, train(make_cfg("trainer.epochs=2", "task.n_samples=200",
                                      f"seed={m.seed}")))


def test_groups_of_different_sizes_train_with_clipping_as_alone(make_cfg):
    """The protocol's first population: the grid on tuning seeds beside more evaluation seeds
    at one of its rates (groups of 1 and 3 models), with per-model gradient clipping."""
    cfg = make_cfg("trainer.grad_clip=0.5", "trainer.epochs=2")
    members = [Member(0, 1e-2), Member(1, 1e-3), Member(2, 1e-3), Member(3, 1e-3)]
    together = train_population(cfg, members)
    for m, r in zip(members, together):
        alone, = train_population(cfg, [m])
        assert r.final["train/loss"] == pytest.approx(alone.final["train/loss"], rel=1e-4)
