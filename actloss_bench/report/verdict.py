"""Verdicts computed from a table of models and an experiment's rules; never typed in.

A rule compares one metric between two sets of cells, ``a`` (the choice the folklore warns
against) and ``b`` (the recommended one), paired by seed within each value of the rule's
``condition`` params. The decision rule, written once (README and every page quote
:data:`DECISION_RULE`):

- effect ``d`` per seed: how much worse ``a`` is than ``b`` (``claim: worse``), or ``a - b``
  (``claim: equivalent``); a diverged model scores the worst value of its metric, never dropped;
- its mean with a 95% paired bootstrap interval (percentile, 10,000 resamples; for a rate
  against a constant, the Wilson interval), and P(a worse than b) = the share of seeds where a
  is worse (ties count half) with its bootstrap interval;
- a one-sided sign-flip permutation test of ``d > 0`` (exact over 2^n sign flips), Holm-corrected
  across every condition of every rule of the claim;
- a condition *reproduces* the claim when the corrected p < 0.05 and the mean effect is at least
  the margin; it shows the *opposite* when the whole interval lies below 0 and the mean is at
  least the margin the other way; it shows *no effect* when the whole interval lies below the
  margin; else it is *undecided*. ``equivalent`` claims
  hold where the interval lies within +-margin and fail where the corrected two-sided p < 0.05
  with |mean| >= margin.
- a rule: ``reproduced`` when every condition reproduces; ``depends`` when some do and others do
  not (the page names where it holds, and whether elsewhere there is no effect, the opposite,
  or no decision); ``contradicted`` when none does and one shows the opposite; ``not
  reproduced`` when every condition shows no effect; ``inconclusive`` otherwise (nothing holds
  and some condition is undecided).

``claim: best`` asks whether a recommended choice ranks best or tied-best among every choice of
the ``over`` param (e.g. ``arm``) run in a condition: ``a`` is a list of filters (the
recommended choices), and per condition the best-scoring of them (mean over seeds) is paired
with the best-scoring other choice; the effect is how much worse the recommendation is. It
*holds* (best or tied-best) when the whole interval lies below the margin, and shows the
*opposite* when the one-sided test says the recommendation is worse by at least the margin.
Picking the best alternative after seeing the data favours the alternative: the test is
conservative for the claim.

Rule keys: ``metric``; ``claim`` (worse | equivalent | best); ``a``/``b`` (param filters);
``b_metric`` (compare with another metric of a's models) or ``b_value`` (a constant) instead of
``b``; ``higher_is_better`` (default true); ``transform`` (log10); ``a_plus``/``b_plus`` (add a
metric column, e.g. an entropy offset); ``margin``; ``condition`` (params); ``where`` (a filter
applied first); ``over`` (best: the param whose values compete); ``name``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

REPRODUCED, NOT_REPRODUCED, DEPENDS = "reproduced", "not reproduced", "depends"
CONTRADICTED, INCONCLUSIVE = "contradicted", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, DEPENDS, CONTRADICTED, INCONCLUSIVE)
# Outcomes of one condition.
HOLDS, OPPOSITE, NO_EFFECT, UNDECIDED = "holds", "opposite", "no effect", "undecided"
ALPHA = 0.05
N_RESAMPLES = 10_000

DECISION_RULE = (
    "Per condition, the effect is how much worse arm *a* is than arm *b*, paired by seed (a "
    "diverged model scores its metric's worst value). It is reported as the mean with a 95% "
    "paired bootstrap interval and P(a worse), the share of seeds where *a* is worse. A "
    "condition reproduces the claim when a one-sided sign-flip permutation test, "
    "Holm-corrected across all conditions of all rules of the claim, gives p < 0.05 and the "
    "mean effect is at least the rule's margin; it shows the opposite when the whole interval "
    "lies below 0 and the mean is at least the margin the other way; it shows no effect when "
    "the whole interval lies below the margin; otherwise it is undecided. Equivalence claims "
    "hold where the interval lies within ±margin. A rule is *reproduced* when every condition "
    "reproduces, *depends* when some do and others do not (each named), *contradicted* when "
    "none does and one shows the opposite, *not reproduced* when every condition shows no "
    "effect, and *inconclusive* otherwise (nothing holds and some condition is undecided).")


@dataclass
class GroupResult:
    condition: Dict[str, str]
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_worse: float  # share of seeds where a is worse than b
    p_worse_low: float
    p_worse_high: float
    p_value: float  # one-sided (worse) or two-sided (equivalent), before correction
    a_mean: float = math.nan
    b_mean: float = math.nan
    p_holm: float = math.nan
    outcome: str = UNDECIDED
    note: str = ""  # claim best: which choices were compared

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.condition.items()) or "all runs"


@dataclass
class RuleResult:
    name: str
    metric: str
    claim: str
    margin: float
    verdict: str = INCONCLUSIVE
    explanation: str = ""
    groups: List[GroupResult] = field(default_factory=list)
    a_label: str = "a"
    b_label: str = "b"
    transform: Optional[str] = None  # the metric as compared: e.g. its log10

    @property
    def metric_label(self) -> str:
        return f"{self.transform} {self.metric}" if self.transform else self.metric

    @property
    def held(self) -> List[GroupResult]:
        return [g for g in self.groups if g.outcome == HOLDS]


def wilson(k: float, n: int, level: float = 0.95):
    """Wilson score interval of a proportion k/n; stays inside [0, 1]."""
    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ci(values: np.ndarray, statistic, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of ``statistic`` over the seeds (scipy.stats.bootstrap);
    a constant sample gets the degenerate interval [value, value]."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    if np.ptp(values) == 0:
        v = float(statistic(values))
        return v, v
    res = stats.bootstrap((values,), statistic, confidence_level=level,
                          n_resamples=N_RESAMPLES, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def share_worse(d: np.ndarray, axis: int = -1):
    """The share of seeds where a is worse (d > 0), ties counting half (vectorised over
    ``axis`` for scipy's bootstrap)."""
    return np.mean(d > 0, axis=axis) + 0.5 * np.mean(d == 0, axis=axis)


def sign_flip_p(d: np.ndarray, alternative: str) -> float:
    """p-value of the mean of paired differences ``d`` against 0, by flipping signs
    (scipy.stats.permutation_test; exact for up to 2^n <= 100,000 flips)."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    res = stats.permutation_test((d,), np.mean, permutation_type="samples",
                                 alternative=alternative, n_resamples=100_000,
                                 random_state=np.random.default_rng(0))
    return float(res.pvalue)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    order = [i for i in np.argsort(p) if math.isfinite(p[i])]
    m = len(order)
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def matches(frame: pd.DataFrame, filt: Optional[Mapping[str, Any]]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in (filt or {}).items():
        if key not in frame:
            raise KeyError(f"filter key {key!r} is not a param of these runs")
        mask &= frame[key].astype(str) == _as_param(value)
    return mask


def _as_param(value: Any) -> str:
    """How MLflow stores a param value (str() of the resolved config value)."""
    return "None" if value is None else str(value)


def _label(filt: Optional[Mapping[str, Any]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (filt or {}).items())


def worst_filled(frame: pd.DataFrame, metric: str, higher_is_better: bool) -> pd.Series:
    """The metric's values, a diverged model's missing value replaced by the worst value the
    table holds (a failure is never dropped)."""
    if metric not in frame:
        return pd.Series(np.nan, index=frame.index)
    v = frame[metric].astype(float)
    finite = v[np.isfinite(v)]
    if len(finite) and "status" in frame:
        worst = finite.min() if higher_is_better else finite.max()
        v = v.where(~((frame["status"] != "ok") & ~np.isfinite(v)), worst)
    return v


def _values(frame, metric, plus, transform, higher_is_better):
    v = worst_filled(frame, metric, higher_is_better)
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


def evaluate_rule(runs: pd.DataFrame, rule: Mapping[str, Any]) -> RuleResult:
    """Effects, intervals and p-values of one rule per condition (outcomes come from
    :func:`decide`, which corrects across a claim's rules)."""
    claim = rule.get("claim", "worse")
    if claim not in ("worse", "equivalent", "best"):
        raise ValueError(f"unknown claim {claim!r}; known: worse, equivalent, best")
    margin = float(rule.get("margin", 0.0))
    higher = bool(rule.get("higher_is_better", True))
    condition = list(rule.get("condition") or [])
    metric, transform = rule["metric"], rule.get("transform")
    frame = runs[matches(runs, rule.get("where"))] if len(runs) else runs
    keys = condition + ["seed"]

    notes: Dict[tuple, str] = {}
    rate_vs_constant = False
    if claim == "best":
        a, b, notes = _best_sides(frame, rule, condition, _values(frame, metric, None,
                                                                   transform, higher), higher)
        b_label = "best alternative"
    else:
        a_rows = frame[matches(frame, rule["a"])]
        a = _side(a_rows, keys, _values(a_rows, metric, rule.get("a_plus"), transform, higher))
        if "b_metric" in rule:
            b_label = rule["b_metric"]
            b = _side(a_rows, keys, _values(a_rows, rule["b_metric"], rule.get("b_plus"),
                                            transform, higher))
        elif "b_value" in rule:
            b_label = str(rule["b_value"])
            b = pd.Series(float(rule["b_value"]), index=a.index)
            rate_vs_constant = bool(len(a)) and bool(a.dropna().isin([0.0, 1.0]).all())
        else:
            b_label = _label(rule["b"])
            b_rows = frame[matches(frame, rule["b"])]
            b = _side(b_rows, keys, _values(b_rows, metric, rule.get("b_plus"), transform,
                                            higher))
    paired = pd.DataFrame({"a": a, "b": b}).dropna()
    paired["d"] = paired["a"] - paired["b"]
    if claim in ("worse", "best") and higher:
        paired["d"] = -paired["d"]

    a_label = ("recommended: " + " | ".join(_label(f) for f in rule["a"]) if claim == "best"
               else _label(rule["a"]))
    result = RuleResult(rule.get("name", metric), metric, claim, margin,
                        a_label=a_label, b_label=b_label, transform=transform)
    grouped = (paired.groupby(level=list(range(len(condition)))) if condition
               else [((), paired)])
    for cond, part in grouped:
        cond = cond if isinstance(cond, tuple) else (cond,)
        d = part["d"].to_numpy()
        mean = float(d.mean()) if len(d) else math.nan
        if rate_vs_constant:  # a rate against a constant: Wilson, inside [0, 1]
            low, high = wilson(float(part["a"].sum()), len(part))
            low, high = low - float(part["b"].iloc[0]), high - float(part["b"].iloc[0])
        else:
            low, high = bootstrap_ci(d, np.mean)
        pw_low, pw_high = bootstrap_ci(d, share_worse)
        p = sign_flip_p(d, "two-sided" if claim == "equivalent" else "greater")
        result.groups.append(GroupResult(
            dict(zip(condition, map(str, cond))), len(part), mean, low, high,
            float(share_worse(d)) if len(d) else math.nan, pw_low, pw_high, p,
            float(part["a"].mean()), float(part["b"].mean()),
            note=notes.get(tuple(map(str, cond)), "")))
    return result


def _best_sides(frame: pd.DataFrame, rule: Mapping[str, Any], condition: List[str],
                values: pd.Series, higher: bool):
    """Claim best: per condition, the seed values of the best recommended choice and of the
    best other choice of ``rule['over']`` (best by the mean over seeds), and a note naming
    both."""
    over = rule["over"]
    recommended = pd.Series(False, index=frame.index)
    for filt in rule["a"]:
        recommended |= matches(frame, filt)
    per_seed = values.groupby([frame[k].astype(str) for k in condition + [over, "seed"]]).mean()
    is_rec = recommended.groupby([frame[k].astype(str) for k in condition + [over]]).any()
    a_parts, b_parts, notes = [], [], {}
    by_condition = (per_seed.groupby(level=list(range(len(condition)))) if condition
                    else [((), per_seed)])
    for cond, part in by_condition:
        cond = cond if isinstance(cond, tuple) else (cond,)
        means = part.groupby(level=len(condition)).mean()
        rec = is_rec.loc[cond] if condition else is_rec
        rec_means, other_means = means[rec.reindex(means.index)], means[~rec.reindex(means.index)]
        if rec_means.empty or other_means.empty:
            continue
        pick = (lambda m: m.idxmax()) if higher else (lambda m: m.idxmin())  # noqa: E731
        best_rec, best_other = pick(rec_means), pick(other_means)
        for choice, parts in ((best_rec, a_parts), (best_other, b_parts)):
            seeds = part.xs(choice, level=len(condition))
            parts.append(seeds.set_axis(pd.MultiIndex.from_tuples(
                [(*cond, s) for s in seeds.index], names=condition + ["seed"])))
        notes[tuple(cond)] = f"{over}={best_rec} vs {over}={best_other}"
    empty = pd.Series(dtype=float)
    return (pd.concat(a_parts) if a_parts else empty,
            pd.concat(b_parts) if b_parts else empty, notes)


def decide(results: List[RuleResult]) -> None:
    """Holm-correct every condition's p-value across the claim's rules, then set each
    condition's outcome and each rule's verdict (the decision rule above)."""
    groups = [g for r in results for g in r.groups]
    for g, p in zip(groups, holm([g.p_value for g in groups])):
        g.p_holm = p
    for r in results:
        for g in r.groups:
            g.outcome = _outcome(r, g)
        r.verdict, r.explanation = _combine(r)


def _outcome(rule: RuleResult, g: GroupResult) -> str:
    m, lo, hi, margin = g.mean, g.ci_low, g.ci_high, rule.margin
    if not math.isfinite(m):
        return UNDECIDED
    significant = math.isfinite(g.p_holm) and g.p_holm < ALPHA
    if rule.claim == "best":  # the effect: how much worse the recommendation is
        if hi < margin:
            return HOLDS
        if significant and m >= margin:
            return OPPOSITE
        return UNDECIDED
    if rule.claim == "worse":
        if significant and m >= margin:
            return HOLDS
        if m <= -margin and hi < 0:
            return OPPOSITE
        if margin > 0 and hi < margin:
            return NO_EFFECT
        return UNDECIDED
    if -margin < lo and hi < margin:
        return HOLDS
    if significant and abs(m) >= margin:
        return OPPOSITE
    return UNDECIDED


def combined(results: List[RuleResult], name: str) -> RuleResult:
    """Every condition of every rule as one rule (``primary: all``): its verdict says whether
    the claim holds across all of them. The rule's name joins each condition's label."""
    same = lambda attr: len({getattr(r, attr) for r in results}) == 1  # noqa: E731
    first = results[0]
    shared_sides = same("a_label") and same("b_label")
    out = RuleResult(name, first.metric if same("metric") else "its rule's metric", first.claim,
                     first.margin, a_label=first.a_label if shared_sides else "",
                     b_label=first.b_label if shared_sides else "")
    for r in results:
        for g in r.groups:  # without shared sides, each condition names its own
            note = g.note or ("" if shared_sides else f"{r.a_label} vs {r.b_label}")
            out.groups.append(GroupResult(**{**g.__dict__, "note": note,
                                             "condition": {"rule": r.name, **g.condition}}))
    out.verdict, out.explanation = _combine(out)
    return out


def _combine(r: RuleResult):
    groups = r.groups
    if not groups:
        return INCONCLUSIVE, "no paired runs to compare"
    by = {o: [g for g in groups if g.outcome == o] for o in (HOLDS, OPPOSITE, NO_EFFECT,
                                                             UNDECIDED)}
    where = lambda gs: "; ".join(g.label for g in gs)  # noqa: E731
    if len(by[HOLDS]) == len(groups):
        return REPRODUCED, "holds in every condition" if len(groups) > 1 else "holds"
    if not by[HOLDS] and by[OPPOSITE]:
        return CONTRADICTED, f"the opposite holds ({where(by[OPPOSITE])})"
    if len(by[NO_EFFECT]) == len(groups):
        return NOT_REPRODUCED, "no condition shows the claimed effect"
    if by[HOLDS]:
        shown = [f"no effect when {where(by[NO_EFFECT])}"] if by[NO_EFFECT] else []
        shown += [f"the opposite when {where(by[OPPOSITE])}"] if by[OPPOSITE] else []
        shown += [f"undecided when {where(by[UNDECIDED])}"] if by[UNDECIDED] else []
        return DEPENDS, f"holds when {where(by[HOLDS])}; " + "; ".join(shown)
    return INCONCLUSIVE, f"undecided when {where(by[UNDECIDED])}"
