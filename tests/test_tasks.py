"""Synthetic datasets: the split matches scikit-learn's, sizes, standardisation, outliers."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from actloss_bench.tasks import make_dataset, split


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
