"""The evidence protocol: which models a job trains, and how its learning rate is chosen.

Tuning is kept apart from evaluation (as DeepOBS does: tune, then re-run the best on fresh
seeds), so the reported numbers carry no selection bias:

- *tuning seeds* (``tune.seeds`` of them, from ``seed + TUNING_SEED_OFFSET``) train at every
  learning rate of the grid (``tune.lr_factors`` times ``optimizer.lr``); the lr with the best
  mean validation score is chosen. Where the choice is an edge of the grid, the grid grows one
  step on that side (the edge's own ratio), on the tuning seeds, until the choice is interior
  or ``tune.max_extensions`` steps were taken (the page reports cells left at that limit);
- *evaluation seeds* (``seed … seed+seeds-1``, paired across arms) train at the chosen lr, and
  at the configured (default) lr for the page's default-lr view. Their test metrics are what
  a verdict reads.

Without a grid (``tune.lr_factors: null``) a job trains its evaluation seeds at the configured
lr only: one seed is an ordinary single run.

This module imports no torch: the memory check and the sweep's progress read it at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import pandas as pd

from actloss_bench.engine.tasks import MULTILABEL, REGRESSION

# Tuning seeds start here, above any evaluation seed base a user would pick (0, 100, ...), so
# the two sets never meet.
TUNING_SEED_OFFSET = 100_000
TUNE, EVAL = "tune", "eval"

# Metrics where lower is better; every other metric is read as higher-is-better.
LOWER_IS_BETTER = ("loss", "mae", "rmse", "ece", "brier", "nll", "ece_positive", "hamming_loss",
                   "interval_width_90", "escape_epoch")


@dataclass(frozen=True)
class Member:
    """One model of a population: its seed and its learning rate."""
    seed: int
    lr: float


def lower_is_better(metric: str) -> bool:
    name = metric.split("/")[-1]
    return name in LOWER_IS_BETTER or name.startswith(("ece_", "nll_"))


def tuning_metric(cfg, kind: str) -> str:
    """``tune.metric``, or for ``auto``: validation balanced accuracy (classification, fair to
    imbalanced data), macro F1 over labels (multilabel) or validation RMSE (regression)."""
    if cfg.tune.metric != "auto":
        return cfg.tune.metric
    return {REGRESSION: "val/rmse", MULTILABEL: "val/f1_macro"}.get(kind, "val/balanced_accuracy")


def is_tuned(cfg) -> bool:
    return bool(cfg.tune.lr_factors)


def learning_rates(cfg) -> List[float]:
    """The initial grid: ``optimizer.lr`` times each of ``tune.lr_factors`` (the configured lr
    alone without a grid)."""
    factors = cfg.tune.lr_factors or [1.0]
    return sorted(float(f"{cfg.optimizer.lr * f:.6g}") for f in factors)


def evaluation_seeds(cfg) -> List[int]:
    return list(range(cfg.seed, cfg.seed + cfg.seeds))


def tuning_seeds(cfg) -> List[int]:
    start = cfg.seed + TUNING_SEED_OFFSET
    return list(range(start, start + cfg.tune.seeds))


def default_lr(cfg) -> float:
    return float(f"{cfg.optimizer.lr:.6g}")


def tuning_members(cfg, lrs: List[float]) -> List[Member]:
    return [Member(s, lr) for lr in lrs for s in tuning_seeds(cfg)]


def evaluation_members(cfg, lr: Optional[float]) -> List[Member]:
    """The evaluation seeds at ``lr`` (None: the default lr)."""
    return [Member(s, default_lr(cfg) if lr is None else lr) for s in evaluation_seeds(cfg)]


def largest_population(cfg) -> int:
    """The most models trained at once by a job (what memory must hold): the grid on the
    tuning seeds beside the evaluation seeds at the default lr."""
    if not is_tuned(cfg):
        return cfg.seeds
    return cfg.tune.seeds * len(learning_rates(cfg)) + cfg.seeds


def models_per_job(cfg) -> int:
    """Models a job trains when its grid needs no extension: its progress unit."""
    if not is_tuned(cfg):
        return cfg.seeds
    return cfg.tune.seeds * len(learning_rates(cfg)) + 2 * cfg.seeds


def at_edge(lrs: List[float], chosen: float) -> bool:
    """Whether the choice is the lowest or the highest point of a grid of two or more."""
    grid = sorted(lrs)
    return len(grid) >= 2 and chosen in (grid[0], grid[-1])


def grid_extension(lrs: List[float], chosen: float, steps: int) -> List[float]:
    """``steps`` grid points beyond the edge the choice sits on, at the edge's own ratio
    (trained together), or none when the choice is interior."""
    if not at_edge(lrs, chosen):
        return []
    grid = sorted(lrs)
    if chosen == grid[0]:
        edge, ratio = grid[0], grid[0] / grid[1]
    else:
        edge, ratio = grid[-1], grid[-1] / grid[-2]
    return [float(f"{edge * ratio ** (i + 1):.6g}") for i in range(steps)]


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
