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


def train_protocol(cfg: DictConfig) -> Trained:
    """Tune on the tuning seeds (growing the grid past an edge choice), then train the
    evaluation seeds at the chosen learning rate; the evaluation seeds at the default rate
    train beside the tuning grid.

    A small population's step costs about as much as a larger one's (the Python overhead of a
    step is paid once for every model stacked in it), so the protocol trains as few
    populations, one after the other, as its choices allow: the grid with the default-rate
    evaluation seeds; the extension steps past an edge, all at once; the chosen rate's
    evaluation seeds, when it is not the default.
    """
    from actloss_bench.engine.training import train_population

    out = Trained()
    default = protocol.evaluation_members(cfg, None)
    if not protocol.is_tuned(cfg):
        out.evaluation_members = default
        out.evaluation = train_population(cfg, default)
        out.metric = protocol.tuning_metric(cfg, out.evaluation[0].kind)
        return out
    out.grid = protocol.learning_rates(cfg)
    out.tuning_members = protocol.tuning_members(cfg, out.grid)
    first = train_population(cfg, out.tuning_members + default)
    out.tuning, default_results = first[:len(out.tuning_members)], first[len(out.tuning_members):]
    out.metric = protocol.tuning_metric(cfg, out.tuning[0].kind)
    out.chosen = _choose(out)
    beyond = protocol.grid_extension(out.grid, out.chosen, cfg.tune.max_extensions)
    if beyond:
        added = protocol.tuning_members(cfg, beyond)
        out.tuning += train_population(cfg, added)
        out.tuning_members += added
        out.grid = sorted(out.grid + beyond)
        out.chosen = _choose(out)
    out.at_limit = protocol.at_edge(out.grid, out.chosen)
    out.evaluation_members, out.evaluation = list(default), list(default_results)
    if out.chosen != protocol.default_lr(cfg):
        chosen = protocol.evaluation_members(cfg, out.chosen)
        out.evaluation += train_population(cfg, chosen)
        out.evaluation_members += chosen
    return out


def _choose(out: Trained) -> float:
    table = selection_table(out.tuning, out.tuning_members)
    if out.metric not in table:  # every model diverged in its first epoch
        table[out.metric] = float("nan")
    return protocol.select_lr(table[["lr", "status", out.metric]], out.metric)
