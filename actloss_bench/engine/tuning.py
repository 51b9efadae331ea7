"""The protocol run: tune the learning rate on the tuning seeds, then train the evaluation
seeds at the chosen rate (and at the default rate, for the default-lr view).

Which seeds, which grid and how the choice is made live in :mod:`actloss_bench.engine.protocol`;
this module trains them (one population per step) and returns every model's result.
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd
from omegaconf import DictConfig

from actloss_bench.engine import protocol


def selection_table(results, members) -> pd.DataFrame:
    """Per tuning model: lr, status and its final validation metrics (no test metric: the
    choice never sees one)."""
    return pd.DataFrame([{"lr": m.lr, "status": r.status,
                          **{k: v for k, v in r.final.items() if k.startswith("val/")}}
                         for m, r in zip(members, results)])


class Trained:
    """A population job's models: the tuning ones (if any) and the evaluation ones."""

    def __init__(self):
        self.tuning, self.tuning_members = [], []
        self.evaluation, self.evaluation_members = [], []
        self.chosen: Optional[float] = None
        self.metric = ""
        self.grid: List[float] = []
        self.at_limit = False  # the choice still sits on an edge after max_extensions steps

    @property
    def kind(self) -> str:
        return (self.evaluation or self.tuning)[0].kind


def train_protocol(cfg: DictConfig) -> Trained:
    """Tune on the tuning seeds (growing the grid past an edge choice), then train the
    evaluation seeds at the chosen and the default learning rates."""
    from actloss_bench.engine.training import train_population

    out = Trained()
    if protocol.is_tuned(cfg):
        out.grid = protocol.learning_rates(cfg)
        out.tuning_members = protocol.tuning_members(cfg, out.grid)
        out.tuning = train_population(cfg, out.tuning_members)
        out.metric = protocol.tuning_metric(cfg, out.tuning[0].kind)
        steps = {"low": 0, "high": 0}
        while True:
            table = selection_table(out.tuning, out.tuning_members)
            if out.metric not in table:  # every model diverged in its first epoch
                table[out.metric] = float("nan")
            out.chosen = protocol.select_lr(table[["lr", "status", out.metric]], out.metric)
            more = protocol.next_lr(out.grid, out.chosen)
            side = "low" if more is not None and more < out.chosen else "high"
            if more is None or steps[side] >= cfg.tune.max_extensions:
                out.at_limit = more is not None
                break
            steps[side] += 1
            added = protocol.tuning_members(cfg, [more])
            out.tuning += train_population(cfg, added)
            out.tuning_members += added
            out.grid = sorted(out.grid + [more])
    out.evaluation_members = protocol.evaluation_members(cfg, out.chosen)
    out.evaluation = train_population(cfg, out.evaluation_members)
    if not out.metric:
        out.metric = protocol.tuning_metric(cfg, out.evaluation[0].kind)
    return out
