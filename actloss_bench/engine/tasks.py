"""Synthetic tasks: seeded scikit-learn generators, split into train/val/test and standardised.

A task builder returns features ``X`` and targets ``y`` for the whole sample; :func:`make_dataset`
splits them (stratified for classification), fits the standardisation on the training split only,
and returns tensors. The test split is never trained on; for regression with outliers the
corruption is applied to the training and validation targets only, so the test split is clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

REGRESSION, BINARY, MULTICLASS = "regression", "binary", "multiclass"
MULTILABEL = "multilabel"  # several independent 0/1 labels per sample
KINDS = (REGRESSION, BINARY, MULTICLASS, MULTILABEL)
# How regression targets reach the model (task.target_scaling); metrics are always computed
# in units of the clean training targets' standard deviation, so every option is comparable.
TARGET_SCALINGS = ("standard", "none", "unit", "symmetric")


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # one of KINDS
    generate: Callable[..., Tuple[np.ndarray, np.ndarray]]
    description: str
    n_classes: Optional[int] = None  # a real dataset's own; else task.n_classes
    shape: Optional[Tuple[int, int]] = None  # a real dataset's (rows, features); else the config's


@dataclass
class Dataset:
    kind: str
    n_classes: int  # 0 for regression; the number of labels for multilabel
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_outliers_train: int = 0  # training targets replaced by outliers
    # Regression: model-unit targets times scale plus shift are in metric units (standardised
    # by the clean training targets); (1, 0) for the default scaling.
    metric_scale: float = 1.0
    metric_shift: float = 0.0

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def _regression(cfg, rng: np.random.RandomState):
    X, y = datasets.make_regression(
        n_samples=cfg.n_samples, n_features=cfg.n_features,
        n_informative=min(cfg.n_features, 10), noise=0.0, random_state=rng,
    )
    # Noise as a fraction of the signal's spread, so the knob means the same at any scale.
    y = y + cfg.noise * y.std() * rng.standard_normal(len(y))
    return X, y


def _classification(cfg, rng, n_classes: int, weights=None):
    return datasets.make_classification(
        n_samples=cfg.n_samples, n_features=cfg.n_features,
        n_informative=max(2, min(cfg.n_features, 5)), n_redundant=0,
        n_classes=n_classes, n_clusters_per_class=1, weights=weights,
        flip_y=cfg.noise, class_sep=cfg.class_sep, random_state=rng,
    )


def _binary(cfg, rng):
    return _classification(cfg, rng, 2)


def _multiclass(cfg, rng):
    return _classification(cfg, rng, cfg.n_classes)


def _imbalanced(cfg, rng):
    return _classification(cfg, rng, 2, weights=[1 - cfg.minority_fraction])


def _multilabel(cfg, rng):
    """``n_classes`` labels, each its own thresholded linear function of the informative
    features (prevalence 20-50%), then ``task.noise`` of the entries flipped. Vectorised:
    scikit-learn's make_multilabel_classification draws sample by sample (~0.4 s per draw)."""
    n_inf = max(2, min(cfg.n_features, 5))
    X = rng.standard_normal((cfg.n_samples, cfg.n_features))
    W = rng.standard_normal((n_inf, cfg.n_classes))
    score = 2.5 * X[:, :n_inf] @ (W / np.linalg.norm(W, axis=0))
    prevalence = rng.uniform(0.2, 0.5, cfg.n_classes)
    threshold = np.array([np.quantile(s, 1 - p) for s, p in zip(score.T, prevalence)])
    y = (score > threshold).astype(int)
    flip = rng.random_sample(y.shape) < cfg.noise
    return X, np.where(flip, 1 - y, y)


def _signal(cfg, rng):
    """Gaussian features and a smooth non-linear signal of them, standardised."""
    X = rng.standard_normal((cfg.n_samples, cfg.n_features))
    w = rng.standard_normal(min(cfg.n_features, 5))
    f = X[:, :len(w)] @ w / np.linalg.norm(w) + 0.5 * np.sin(2 * X[:, 0])
    return X, (f - f.mean()) / f.std()


def _heteroscedastic(cfg, rng):
    """Regression whose noise grows with the second feature: sd 0.1 where x_1 is very negative,
    up to 0.1 + 2 * task.noise where it is very positive (noise 0: homoscedastic)."""
    X, f = _signal(cfg, rng)
    sd = 0.1 + cfg.noise * (1 + np.tanh(2 * X[:, min(1, cfg.n_features - 1)]))
    return X, f + sd * rng.standard_normal(len(f))


def _bounded(cfg, rng):
    """Targets inside [task.target_low, task.target_high]: a squashed smooth signal plus noise
    before the squashing, so every target stays inside the range."""
    X, f = _signal(cfg, rng)
    z = 1.5 * f + cfg.noise * rng.standard_normal(len(f))
    return X, cfg.target_low + (cfg.target_high - cfg.target_low) / (1 + np.exp(-z))


def _pad(X: np.ndarray, cfg, rng) -> np.ndarray:
    """2-D sets get extra pure-noise dimensions when ``n_features > 2``."""
    extra = max(0, cfg.n_features - 2)
    return np.hstack([X, rng.standard_normal((len(X), extra))]) if extra else X


def _moons(cfg, rng):
    X, y = datasets.make_moons(n_samples=cfg.n_samples, noise=cfg.noise, random_state=rng)
    return _pad(X, cfg, rng), y


def _circles(cfg, rng):
    X, y = datasets.make_circles(
        n_samples=cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=rng
    )
    return _pad(X, cfg, rng), y


def _xor(cfg, rng):
    X = rng.uniform(-1, 1, size=(cfg.n_samples, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    return _pad(X + cfg.noise * rng.standard_normal(X.shape), cfg, rng), y


def _spirals(cfg, rng):
    n = cfg.n_samples
    y = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi  # two turns, denser near the centre
    sign = np.where(y == 0, 1.0, -1.0)
    X = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    return _pad(X + cfg.noise * rng.standard_normal(X.shape), cfg, rng), y


def _real(loader):
    """A dataset scikit-learn ships (offline): all of its rows, whatever task.n_samples says;
    each seed draws its own split of them."""
    def generate(cfg, rng):
        X, y = loader(return_X_y=True)
        return np.asarray(X, dtype=float), np.asarray(y)
    return generate


TASKS: Dict[str, Task] = {
    t.name: t
    for t in [
        Task("regression", REGRESSION, _regression, "linear-Gaussian regression (make_regression)"),
        Task("regression_outliers", REGRESSION, _regression,
             "regression whose train/val targets carry gross outliers; clean test split"),
        Task("heteroscedastic", REGRESSION, _heteroscedastic,
             "non-linear regression whose noise sd grows 1 to 21-fold (task.noise) with x_1"),
        Task("bounded_regression", REGRESSION, _bounded,
             "targets inside [task.target_low, task.target_high] (e.g. [0, 1] or [0, 1000])"),
        Task("binary", BINARY, _binary, "two Gaussian clusters (make_classification)"),
        Task("multiclass", MULTICLASS, _multiclass, "n_classes Gaussian clusters"),
        Task("imbalanced", BINARY, _imbalanced, "binary with task.minority_fraction positives"),
        Task("multilabel", MULTILABEL, _multilabel,
             "task.n_classes labels per sample, each a linear threshold of the features"),
        Task("moons", BINARY, _moons, "two interleaving half circles (2-D)"),
        Task("circles", BINARY, _circles, "a circle inside a circle (2-D)"),
        Task("xor", BINARY, _xor, "quadrant XOR (2-D)"),
        Task("spirals", BINARY, _spirals, "two interleaved spirals (2-D)"),
        Task("breast_cancer", BINARY, _real(datasets.load_breast_cancer),
             "scikit-learn's Wisconsin breast cancer data: 569 x 30, binary (real)",
             shape=(569, 30)),
        Task("wine", MULTICLASS, _real(datasets.load_wine),
             "scikit-learn's wine data: 178 x 13, 3 classes (real)", n_classes=3,
             shape=(178, 13)),
        Task("digits", MULTICLASS, _real(datasets.load_digits),
             "scikit-learn's 8x8 handwritten digits: 1797 x 64, 10 classes (real)", n_classes=10,
             shape=(1797, 64)),
        Task("diabetes", REGRESSION, _real(datasets.load_diabetes),
             "scikit-learn's diabetes progression data: 442 x 10, regression (real)",
             shape=(442, 10)),
    ]
}


def _corrupt(y: np.ndarray, fraction: float, scale: float, rng) -> Tuple[np.ndarray, int]:
    """Replace a fraction of targets by gross one-sided outliers (scale x target std)."""
    n_out = int(round(fraction * len(y)))
    if n_out == 0:
        return y, 0
    idx = rng.choice(len(y), size=n_out, replace=False)
    y = y.copy()
    # One-sided, so the outliers shift the conditional mean (what MSE fits) but not the median.
    y[idx] += scale * (1.0 + rng.uniform(0, 1, n_out))
    return y, n_out


def _flip_labels(y: np.ndarray, fraction: float, n_classes: int, rng) -> np.ndarray:
    """Replace ``fraction`` of the labels by another class, drawn uniformly (symmetric noise,
    as in Ghosh et al. 2017)."""
    n_flip = int(round(fraction * len(y)))
    if n_flip == 0:
        return y
    idx = rng.choice(len(y), size=n_flip, replace=False)
    y = y.copy()
    y[idx] = (y[idx] + rng.randint(1, n_classes, size=n_flip)) % n_classes
    return y


def _target_units(scaling: str, y_train: np.ndarray, mu: float, sd: float):
    """(scale, shift) with standardised target = model target * scale + shift."""
    lo, hi = y_train.min(), y_train.max()
    span = max(hi - lo, 1e-12)
    return {"standard": (1.0, 0.0),
            "none": (1 / sd, -mu / sd),
            "unit": (span / sd, (lo - mu) / sd),  # training range -> [0, 1]
            "symmetric": (span / (2 * sd), (lo + span / 2 - mu) / sd),  # -> [-1, 1]
            }[scaling]


def split(X: np.ndarray, y: np.ndarray, test_size: float, seed: int, stratify: bool):
    """``train_test_split(X, y, test_size=..., random_state=seed, stratify=y or None)``: the same
    splitter classes and sizes, so the same rows (tested), without its ~1 ms of per-call input
    validation (each job makes two splits)."""
    n_test = math.ceil(test_size * len(y))
    splitter = StratifiedShuffleSplit if stratify else ShuffleSplit
    cv = splitter(test_size=n_test, train_size=len(y) - n_test, random_state=seed)
    train, test = next(cv.split(X, y if stratify else None))
    return X[train], X[test], y[train], y[test]


def make_dataset(cfg, seed: int) -> Dataset:
    """Generate, split (60/20/20 by default) and standardise the task named ``cfg.name``."""
    task = TASKS[cfg.name]
    data_seed = seed if cfg.data_seed is None else cfg.data_seed
    rng = np.random.RandomState(data_seed)
    X, y = task.generate(cfg, rng)
    stratify = task.kind in (BINARY, MULTICLASS)
    X_rest, X_test, y_rest, y_test = split(X, y, cfg.test_fraction, data_seed, stratify)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    X_train, X_val, y_train, y_val = split(X_rest, y_rest, val_share, data_seed, stratify)
    mu, sd = X_train.mean(0), X_train.std(0) + 1e-12
    X_train, X_val, X_test = ((a - mu) / sd for a in (X_train, X_val, X_test))

    n_outliers, scale, shift = 0, 1.0, 0.0
    if task.kind == REGRESSION:
        # Standardise targets with the clean training statistics, corrupt train/val, then
        # bring them to the units task.target_scaling asks for.
        y_mu, y_sd = y_train.mean(), y_train.std() + 1e-12
        scale, shift = _target_units(cfg.target_scaling, y_train, y_mu, y_sd)
        y_train, y_val, y_test = ((a - y_mu) / y_sd for a in (y_train, y_val, y_test))
        y_train, n_outliers = _corrupt(y_train, cfg.outlier_fraction, cfg.outlier_scale, rng)
        y_val, _ = _corrupt(y_val, cfg.outlier_fraction, cfg.outlier_scale, rng)
        y_train, y_val, y_test = ((a - shift) / scale for a in (y_train, y_val, y_test))
        n_classes = 0
    elif task.kind == MULTILABEL:
        n_classes = y.shape[1]
        # Each 0/1 label entry is a two-class label: flip that share of all the entries.
        y_train, y_val = (_flip_labels(a.ravel(), cfg.label_noise, 2, rng).reshape(a.shape)
                          for a in (y_train, y_val))
    else:
        n_classes = 2 if task.kind == BINARY else task.n_classes or cfg.n_classes
        y_train = _flip_labels(y_train, cfg.label_noise, n_classes, rng)
        y_val = _flip_labels(y_val, cfg.label_noise, n_classes, rng)

    to_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    y_dtype = torch.float32 if task.kind == REGRESSION else torch.long  # values or labels
    to_y = lambda a: torch.as_tensor(a, dtype=y_dtype)  # noqa: E731
    return Dataset(
        kind=task.kind, n_classes=n_classes,
        X_train=to_x(X_train), y_train=to_y(y_train),
        X_val=to_x(X_val), y_val=to_y(y_val),
        X_test=to_x(X_test), y_test=to_y(y_test),
        n_outliers_train=n_outliers, metric_scale=float(scale), metric_shift=float(shift),
    )
