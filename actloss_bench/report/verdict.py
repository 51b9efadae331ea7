"""Verdicts computed from a run table and an experiment's rules; never typed in.

A rule compares one metric between two sets of cells, ``a`` (the choice the folklore warns
against) and ``b`` (the recommended one), paired by seed within each value of the rule's
``condition`` params. Per condition group the paired differences give a mean and a 95%
t-interval; the claim holds there when the effect is at least ``margin`` in the claimed
direction and the interval excludes zero (``claim: worse``), or when the whole interval lies
within +-margin (``claim: equivalent``).

Rule keys: ``metric``; ``claim`` (worse | equivalent); ``a``/``b`` (param filters);
``b_metric`` (compare with another metric of a's runs) or ``b_value`` (a constant) instead of
``b``; ``higher_is_better`` (default true); ``transform`` (log10); ``a_plus``/``b_plus`` (add a
metric column, e.g. an entropy offset); ``margin``; ``condition`` (params); ``where`` (a filter
applied first); ``name``.

A rule's verdict: ``reproduced`` when every group reproduces, ``not reproduced`` when none
does (flagged ``contradicted`` when some group shows the opposite, significantly), else
``depends``, with the condition under which it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

REPRODUCED, NOT_REPRODUCED, DEPENDS = "reproduced", "not reproduced", "depends"
OPPOSITE, NO_DIFFERENCE, INCONCLUSIVE = "opposite", "no clear difference", "inconclusive"


@dataclass
class GroupResult:
    condition: Dict[str, str]
    n: int
    mean: float
    ci_low: float
    ci_high: float
    outcome: str  # REPRODUCED, OPPOSITE, NO_DIFFERENCE or INCONCLUSIVE
    a_mean: float = math.nan
    b_mean: float = math.nan

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.condition.items()) or "all runs"


@dataclass
class RuleResult:
    name: str
    metric: str
    claim: str
    margin: float
    verdict: str
    contradicted: bool
    explanation: str
    groups: List[GroupResult] = field(default_factory=list)


def mean_ci(values: Sequence[float], level: float = 0.95):
    """Mean and two-sided t-interval; a single value gets an infinite interval."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if n == 1:
        return m, -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half


def _matches(frame: pd.DataFrame, filt: Optional[Mapping[str, Any]]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in (filt or {}).items():
        if key not in frame:
            raise KeyError(f"filter key {key!r} is not a param of these runs")
        mask &= frame[key].astype(str) == _as_param(value)
    return mask


def _as_param(value: Any) -> str:
    """How MLflow stores a param value (str() of the resolved config value)."""
    return "None" if value is None else str(value)


def _values(frame: pd.DataFrame, metric: str, plus: Optional[str], transform: Optional[str]):
    if metric not in frame:
        return pd.Series(np.nan, index=frame.index)
    v = frame[metric].astype(float)
    if plus:
        v = v + frame[plus].astype(float)
    if transform == "log10":
        v = np.log10(v.where(v > 0))
    elif transform is not None:
        raise ValueError(f"unknown transform {transform!r}; known: log10")
    return v


def _side(frame: pd.DataFrame, keys: List[str], values: pd.Series) -> pd.Series:
    """Mean value per (condition..., seed), averaging any other params that vary."""
    return values.groupby([frame[k].astype(str) for k in keys]).mean()


def _outcome(claim: str, mean: float, lo: float, hi: float, margin: float) -> str:
    if not math.isfinite(mean):
        return INCONCLUSIVE
    if claim == "worse":
        if mean >= margin and lo > 0:
            return REPRODUCED
        if mean <= -margin and hi < 0:
            return OPPOSITE
        return NO_DIFFERENCE
    if claim == "equivalent":
        if -margin < lo and hi < margin:
            return REPRODUCED
        if abs(mean) >= margin and (lo > 0 or hi < 0):
            return OPPOSITE
        return INCONCLUSIVE
    raise ValueError(f"unknown claim {claim!r}; known: worse, equivalent")


def evaluate_rule(runs: pd.DataFrame, rule: Mapping[str, Any]) -> RuleResult:
    claim = rule.get("claim", "worse")
    margin = float(rule.get("margin", 0.0))
    higher_is_better = bool(rule.get("higher_is_better", True))
    condition = list(rule.get("condition") or [])
    metric, transform = rule["metric"], rule.get("transform")
    frame = runs[_matches(runs, rule.get("where"))] if len(runs) else runs
    keys = condition + ["seed"]

    a_rows = frame[_matches(frame, rule["a"])]
    a = _side(a_rows, keys, _values(a_rows, metric, rule.get("a_plus"), transform))
    if "b_metric" in rule:
        b = _side(a_rows, keys, _values(a_rows, rule["b_metric"], rule.get("b_plus"), transform))
    elif "b_value" in rule:
        b = pd.Series(float(rule["b_value"]), index=a.index)
    else:
        b_rows = frame[_matches(frame, rule["b"])]
        b = _side(b_rows, keys, _values(b_rows, metric, rule.get("b_plus"), transform))
    paired = pd.DataFrame({"a": a, "b": b}).dropna()
    # d > 0 means a is worse (claim 'worse'); for 'equivalent' it is simply a - b.
    paired["d"] = paired["a"] - paired["b"]
    if claim == "worse" and higher_is_better:
        paired["d"] = -paired["d"]

    groups: List[GroupResult] = []
    if condition:
        grouped = paired.groupby(level=list(range(len(condition))))
    else:
        grouped = [((), paired)]
    for cond, part in grouped:
        cond = cond if isinstance(cond, tuple) else (cond,)
        m, lo, hi = mean_ci(part["d"])
        groups.append(GroupResult(dict(zip(condition, map(str, cond))), len(part), m, lo, hi,
                                  _outcome(claim, m, lo, hi, margin),
                                  float(part["a"].mean()), float(part["b"].mean())))
    verdict, contradicted, text = _combine(groups, condition)
    return RuleResult(rule.get("name", metric), metric, claim, margin, verdict, contradicted,
                      text, groups)


def _combine(groups: List[GroupResult], condition: List[str]):
    if not groups:
        return NOT_REPRODUCED, False, "no paired runs to compare"
    held = [g for g in groups if g.outcome == REPRODUCED]
    opposite = [g for g in groups if g.outcome == OPPOSITE]
    if len(held) == len(groups):
        return REPRODUCED, False, "holds in every condition" if condition else "holds"
    if not held:
        if opposite:
            where = "; ".join(g.label for g in opposite)
            return NOT_REPRODUCED, True, f"contradicted: the opposite holds ({where})"
        return NOT_REPRODUCED, False, "no group shows the claimed effect beyond the margin"
    others = [g for g in groups if g.outcome != REPRODUCED]
    text = (f"holds when {'; '.join(g.label for g in held)}; "
            f"not when {'; '.join(f'{g.label} ({g.outcome})' for g in others)}")
    return DEPENDS, bool(opposite), text
