"""Synthetic datasets: the split matches scikit-learn's, sizes, standardisation, outliers."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from actloss_bench.engine.tasks import make_dataset, split


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("n,test_size,seed", [(400, 0.2, 0), (333, 0.25, 7), (50, 0.3, 3)])
def test_split_is_train_test_split(stratify, n, test_size, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 0.2).astype(int)
    got = split(X, y, test_size, seed, stratify)
    expected = train_test_split(X, y, test_size=test_size, random_state=seed,
                                stratify=y if stratify else None)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("task", ["binary", "imbalanced", "multiclass", "moons"])
def test_classification_splits_are_60_20_20_stratified_and_standardised(make_cfg, task):
    cfg = make_cfg(f"task={task}", "task.n_samples=500")
    data = make_dataset(cfg.task, 0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (300, 100, 100)
    assert data.n_classes == (cfg.task.n_classes if task == "multiclass" else 2)
    share = [torch.bincount(y, minlength=data.n_classes) / len(y)
             for y in (data.y_train, data.y_val, data.y_test)]
    for s in share[1:]:  # stratified: each split has the training split's class shares
        torch.testing.assert_close(s, share[0], atol=0.02, rtol=0)
    torch.testing.assert_close(data.X_train.mean(0), torch.zeros(data.n_features), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(data.X_train.std(0, unbiased=False),
                               torch.ones(data.n_features), atol=1e-4, rtol=0)


def test_same_seed_same_data_and_data_seed_decouples(make_cfg):
    a, b = make_dataset(make_cfg().task, 1), make_dataset(make_cfg().task, 1)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, make_dataset(make_cfg().task, 2).X_train)
    fixed = make_cfg("task.data_seed=5").task
    assert torch.equal(make_dataset(fixed, 1).X_train, make_dataset(fixed, 2).X_train)


def test_outliers_corrupt_train_and_val_but_not_test(make_cfg):
    cfg = make_cfg("task=regression_outliers", "task.n_samples=1000")
    data = make_dataset(cfg.task, 0)
    clean = make_dataset(make_cfg("task=regression", "task.n_samples=1000").task, 0)
    assert data.n_outliers_train == round(cfg.task.outlier_fraction * 600)
    changed = (data.y_train != clean.y_train).sum().item()
    assert changed == data.n_outliers_train
    assert bool((data.y_train >= clean.y_train).all())  # one-sided
    assert torch.equal(data.y_test, clean.y_test)


@pytest.mark.parametrize("task, shape, n_classes", [
    ("breast_cancer", (569, 30), 2), ("wine", (178, 13), 3), ("digits", (1797, 64), 10),
    ("diabetes", (442, 10), 0)])
def test_real_datasets_keep_their_rows_and_split_by_seed(make_cfg, task, shape, n_classes):
    from sklearn import datasets

    cfg = make_cfg(f"task={task}")
    a, b = make_dataset(cfg.task, 0), make_dataset(cfg.task, 1)
    n = len(a.y_train) + len(a.y_val) + len(a.y_test)
    assert (n, a.n_features) == shape and a.n_classes == n_classes
    assert not torch.equal(a.X_test, b.X_test), "each seed draws its own split"
    X, _ = getattr(datasets, f"load_{task}")(return_X_y=True)
    assert np.allclose(a.X_train.mean(0), 0, atol=1e-5)  # standardised on the training split
    assert len(X) == n


def test_label_noise_flips_train_and_val_labels_to_other_classes_not_test(make_cfg):
    clean = make_dataset(make_cfg("task=multiclass", "task.n_classes=4").task, 3)
    noisy = make_dataset(make_cfg("task=multiclass", "task.n_classes=4",
                                  "task.label_noise=0.3").task, 3)
    for part in ("train", "val"):
        flipped = getattr(noisy, f"y_{part}") != getattr(clean, f"y_{part}")
        assert flipped.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert torch.equal(noisy.y_test, clean.y_test) and torch.equal(noisy.X_train, clean.X_train)


def test_multilabel_task_has_one_0_1_column_per_label_and_label_noise_flips_entries(make_cfg):
    cfg = make_cfg("task=multilabel", "task.n_samples=500")
    data = make_dataset(cfg.task, 0)
    assert data.kind == "multilabel" and data.n_classes == cfg.task.n_classes == 5
    assert data.y_train.shape == (300, 5) and set(data.y_train.unique().tolist()) == {0, 1}
    assert 1.0 < data.y_train.float().sum(1).mean() < 2.5  # 20-50% of samples per label
    noisy = make_dataset(make_cfg("task=multilabel", "task.n_samples=500",
                                  "task.label_noise=0.2").task, 0)
    flipped = (noisy.y_train != data.y_train).float().mean().item()
    assert flipped == pytest.approx(0.2, abs=1e-3)
    assert torch.equal(noisy.y_test, data.y_test)  # the test split stays clean


def test_heteroscedastic_noise_grows_with_the_second_feature(make_cfg):
    from actloss_bench.engine.tasks import TASKS

    cfg = make_cfg("task=heteroscedastic", "task.n_samples=20000")
    rng = np.random.RandomState(0)
    X, y = TASKS["heteroscedastic"].generate(cfg.task, rng)
    quiet = make_cfg("task=heteroscedastic", "task.n_samples=20000", "task.noise=0.0").task
    X0, y0 = TASKS["heteroscedastic"].generate(quiet, np.random.RandomState(0))
    np.testing.assert_array_equal(X, X0)
    extra = y - y0  # the same draws: only the input-dependent part of the noise differs
    low, high = extra[X[:, 1] < -1].std(), extra[X[:, 1] > 1].std()
    assert high > 5 * low


@pytest.mark.parametrize("scaling,low,high", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0)])
def test_target_scaling_maps_the_training_range(make_cfg, scaling, low, high):
    cfg = make_cfg("task=bounded_regression", "task.target_high=1000",
                   f"task.target_scaling={scaling}")
    data = make_dataset(cfg.task, 0)
    assert data.y_train.min().item() == pytest.approx(low, abs=1e-5)
    assert data.y_train.max().item() == pytest.approx(high, abs=1e-5)


@pytest.mark.parametrize("scaling", ["none", "unit", "symmetric"])
def test_every_target_scaling_gives_the_same_targets_in_metric_units(make_cfg, scaling):
    standard = make_dataset(make_cfg("task=bounded_regression", "task.target_high=1000").task, 3)
    other = make_dataset(make_cfg("task=bounded_regression", "task.target_high=1000",
                                  f"task.target_scaling={scaling}").task, 3)
    for part in ("train", "val", "test"):
        y = getattr(other, f"y_{part}").double() * other.metric_scale + other.metric_shift
        torch.testing.assert_close(y, getattr(standard, f"y_{part}").double(), atol=1e-4,
                                   rtol=0)
    raw = make_dataset(make_cfg("task=bounded_regression", "task.target_high=1000",
                                "task.target_scaling=none").task, 3)
    assert 0 <= raw.y_train.min() and raw.y_train.max() <= 1000 and raw.y_train.max() > 500
