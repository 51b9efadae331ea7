"""The evidence protocol's pieces that training and the report share.

- A job's population: seeds ``seed … seed+seeds-1`` times the learning-rate grid
  (``tune.lr_factors`` times ``optimizer.lr``; without a grid, the configured lr alone).
- Learning-rate selection on the validation split: the lr whose models score best on the
  tuning metric, averaged over seeds; a diverged model scores the worst value, never dropped.
  Selection never sees a test metric (the function is given none).
"""

from __future__ import annotations

import math
from typing import List

import pandas as pd

from actloss_bench.tasks import MULTILABEL, REGRESSION
from actloss_bench.training import Member

# Metrics where lower is better; every other metric is read as higher-is-better.
LOWER_IS_BETTER = ("loss", "mae", "rmse", "ece", "brier", "nll", "ece_positive", "hamming_loss",
                   "interval_width_90")


def lower_is_better(metric: str) -> bool:
    name = metric.split("/")[-1]
    return name in LOWER_IS_BETTER or name.startswith(("ece_", "nll_"))


def tuning_metric(cfg, kind: str) -> str:
    """``tune.metric``, or for ``auto``: validation balanced accuracy (classification, fair to
    imbalanced data), macro F1 over labels (multilabel) or validation RMSE (regression)."""
    if cfg.tune.metric != "auto":
        return cfg.tune.metric
    return {REGRESSION: "val/rmse", MULTILABEL: "val/f1_macro"}.get(kind, "val/balanced_accuracy")


def learning_rates(cfg) -> List[float]:
    """The job's learning-rate grid: ``optimizer.lr`` times each of ``tune.lr_factors``."""
    factors = cfg.tune.lr_factors or [1.0]
    return [float(f"{cfg.optimizer.lr * f:.6g}") for f in factors]


def members(cfg) -> List[Member]:
    """Every model of the job: each learning rate of the grid for each seed."""
    return [Member(s, lr) for lr in learning_rates(cfg)
            for s in range(cfg.seed, cfg.seed + cfg.seeds)]


def select_lr(table: pd.DataFrame, metric: str) -> float:
    """The learning rate with the best mean ``metric`` over seeds (columns ``lr``, ``status``
    and ``metric``; one row per model, validation metrics only). A diverged model, or one
    without a finite value, gets the worst value seen in the table; ties go to the smaller lr."""
    lower = lower_is_better(metric)
    values = table[metric].astype(float).where(table["status"] == "ok")
    finite = values[values.map(math.isfinite)]
    worst = (finite.max() if lower else finite.min()) if len(finite) else 0.0
    scores = values.where(values.map(math.isfinite), worst).groupby(table["lr"]).mean()
    best = scores.min() if lower else scores.max()
    return float(min(lr for lr, s in scores.items() if s == best))
