"""Verdicts computed from a table of models and a claim's parts; never typed in.

A claim is split into *parts*; each part is one rule (``claim.verdict.rules`` in the
experiment's YAML) comparing one metric between two sets of cells, ``a`` (the choice the
folklore warns against) and ``b`` (the recommended one), paired by seed within each value of
the rule's ``condition`` params. :data:`DECISION_RULE` is quoted on every page.

Rule keys: ``name`` (the part, as the claim states it); ``metric``; ``claim`` (worse |
equivalent | best); ``a``/``b`` (param filters); ``b_metric`` (another metric of a's models) or
``b_value`` (a constant) instead of ``b``; ``higher_is_better`` (default true); ``transform``
(log10); ``a_plus``/``b_plus`` (add a metric column); ``condition`` (params); ``where`` (a
filter applied first); ``over`` (best: the param whose values compete); ``controls`` (a list of
condition filters, each with ``expect: absent | present`` and ``why``); ``margin`` with
``margin_why`` (only where the claim itself states a number; else :data:`MARGINS` decides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from actloss_bench.report import stats
from actloss_bench.report.margins import CHANCE_METRICS, RATES, rule_margin

# Outcomes of one condition.
HOLDS, SMALLER, NO_EFFECT = "holds", "smaller than claimed", "no effect"
OPPOSITE, NOT_TESTABLE, UNDECIDED = "opposite", "not testable", "undecided"
OUTCOMES = (HOLDS, SMALLER, NO_EFFECT, OPPOSITE, NOT_TESTABLE, UNDECIDED)
# Words of a part and of a claim.
REPRODUCED, PARTLY, DEPENDS = "reproduced", "partly reproduced", "depends"
NOT_REPRODUCED, CONTRADICTED, INCONCLUSIVE = "not reproduced", "contradicted", "inconclusive"
WORDS = (REPRODUCED, PARTLY, DEPENDS, NOT_REPRODUCED, CONTRADICTED, INCONCLUSIVE)
NOT_RUN = "not run"

DECISION_RULE = (
    "Per condition, the effect is how much worse arm *a* is than arm *b*, paired by seed (a "
    "model that diverged scores the worst value seen in either arm). Its interval is the "
    "union of Student's t and the studentized bootstrap (95%; a 0/1 rate against a constant: "
    "Clopper-Pearson; paired 0/1 outcomes: from each arm's Clopper-Pearson interval). Its test "
    "is two-sided: sign-flip for a mean, exact binomial for a rate against a constant, exact "
    "McNemar for paired 0/1 outcomes; Holm-corrected across the in-scope conditions of all "
    "parts of the claim (controls form their own family). A condition **holds** when the test "
    "is significant (p < 0.05) with the claimed sign and the mean reaches the margin; it is "
    "**smaller than claimed** when significant with the claimed sign below the margin; "
    "**opposite** when significant with the other sign; **no effect** when not significant "
    "and the interval lies within ±margin; **not testable** when both arms sit at the "
    "metric's chance level, are constant, have no events, or both diverged; otherwise "
    "**undecided**. Significant means the corrected test rejects 0 and the interval excludes "
    "0 on the same side. Equivalence claims hold when the interval lies within ±margin. A part "
    "is **reproduced** when every in-scope condition that can be tested holds (the others "
    "named); **depends** when some hold and an interval on the difference of effects between "
    "a condition where it holds and one where it does not excludes 0; otherwise its word "
    "comes from the effect pooled over its testable in-scope conditions (per seed): "
    "reproduced, not reproduced (no effect, or smaller than claimed), contradicted "
    "(opposite) or inconclusive (nothing testable, or undecided). A claim is reproduced when "
    "every part "
    "is, partly reproduced when some are (the others named), and otherwise takes the word its "
    "parts share (contradicted if any part is).")


@dataclass
class GroupResult:
    condition: Dict[str, str]
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_worse: float  # share of seeds where a is worse than b
    p_value: float  # two-sided, before correction
    a_mean: float = math.nan
    b_mean: float = math.nan
    p_holm: float = math.nan
    outcome: str = UNDECIDED
    note: str = ""  # claim best: which choices were compared
    why: str = ""  # not testable: which reason
    chance: Optional[float] = None  # the metric's chance level in this condition
    control: Optional[Dict[str, Any]] = None  # a control's expectation, when this is one
    test: str = "sign-flip"
    d: pd.Series = field(default_factory=lambda: pd.Series(dtype=float), repr=False)
    a: pd.Series = field(default_factory=lambda: pd.Series(dtype=float), repr=False)
    b: pd.Series = field(default_factory=lambda: pd.Series(dtype=float), repr=False)

    @property
    def label(self) -> str:
        if "pooled" in self.condition:
            return f"pooled over {self.condition['pooled']}"
        return ", ".join(f"{k}={v}" for k, v in self.condition.items()) or "all runs"

    @property
    def control_failed(self) -> bool:
        if self.control is None:
            return False
        if self.control.get("expect", "absent") == "absent":
            return self.outcome == HOLDS
        return self.outcome in (NO_EFFECT, OPPOSITE, NOT_TESTABLE)


@dataclass
class RuleResult:
    """One part of a claim: its conditions (in scope and controls) and its word."""
    name: str
    metric: str
    claim: str
    margin: float
    margin_source: str = ""
    word: str = INCONCLUSIVE
    explanation: str = ""
    groups: List[GroupResult] = field(default_factory=list)  # in-scope conditions
    controls: List[GroupResult] = field(default_factory=list)
    pooled: Optional[GroupResult] = None  # the effect over every in-scope condition
    a_label: str = "a"
    b_label: str = "b"
    transform: Optional[str] = None
    higher_is_better: bool = True
    rate: str = ""  # "constant" or "paired": the exact tests for 0/1 outcomes
    rests_on: Optional[GroupResult] = None  # the condition (or pooled effect) the word cites

    @property
    def metric_label(self) -> str:
        return f"{self.transform} {self.metric}" if self.transform else self.metric

    @property
    def held(self) -> List[GroupResult]:
        return [g for g in self.groups if g.outcome == HOLDS]

    @property
    def warnings(self) -> List[str]:
        return [f"control {g.label} ({g.control.get('why', '')}) expected the effect to be "
                f"{g.control.get('expect', 'absent')}, but it is {g.outcome}"
                for g in self.controls if g.control_failed]


def matches(frame: pd.DataFrame, filt: Optional[Mapping[str, Any]]) -> pd.Series:
    """Rows whose params equal the filter's values (a list: any of its values)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in (filt or {}).items():
        if key not in frame:
            raise KeyError(f"filter key {key!r} is not a param of these runs")
        values = value if isinstance(value, (list, tuple)) else [value]
        mask &= frame[key].astype(str).isin([_as_param(v) for v in values])
    return mask


def _as_param(value: Any) -> str:
    """How MLflow stores a param value (str() of the resolved config value)."""
    return "None" if value is None else str(value)


def _label(filt: Optional[Mapping[str, Any]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (filt or {}).items())


def _raw(frame: pd.DataFrame, metric: str, plus: Optional[str], transform: Optional[str]):
    v = frame[metric].astype(float) if metric in frame else pd.Series(np.nan, index=frame.index)
    if plus:
        v = v + frame[plus].astype(float)
    return stats.transform(v, transform)


def fill_failures(values: List[pd.Series], frames: List[pd.DataFrame],
                  higher_is_better: bool) -> List[pd.Series]:
    """A model that did not finish (diverged) scores the worst finite value seen in *any* arm
    of the comparison, so a failing arm never wins by the survivors it has left, and an arm
    that failed completely is counted, never dropped."""
    finite = pd.concat([v[np.isfinite(v)] for v in values]) if values else pd.Series([])
    if finite.empty:
        return values
    worst = finite.min() if higher_is_better else finite.max()
    out = []
    for v, f in zip(values, frames):
        failed = ~np.isfinite(v)
        if "status" in f:
            failed &= f["status"] != "ok"
        out.append(v.where(~failed, worst))
    return out


def _by_seed(frame: pd.DataFrame, keys: List[str], values: pd.Series) -> pd.Series:
    """Mean value per (condition..., seed), averaging any other params that vary."""
    return values.groupby([frame[k].astype(str) for k in keys]).mean()


def evaluate_rule(runs: pd.DataFrame, rule: Mapping[str, Any]) -> RuleResult:
    """Effects, intervals and p-values of one part per condition (outcomes come from
    :func:`decide`, which corrects across the claim's parts)."""
    claim = rule.get("claim", "worse")
    if claim not in ("worse", "equivalent", "best"):
        raise ValueError(f"unknown claim {claim!r}; known: worse, equivalent, best")
    margin, source = rule_margin(rule)
    higher = bool(rule.get("higher_is_better", True))
    condition = list(rule.get("condition") or [])
    metric, transform = rule["metric"], rule.get("transform")
    frame = runs[matches(runs, rule.get("where"))] if len(runs) else runs
    keys = condition + ["seed"]
    is_rate = metric in RATES

    notes: Dict[tuple, str] = {}
    rate = ""
    if claim == "best":
        vals = fill_failures([_raw(frame, metric, None, transform)], [frame], higher)[0]
        a, b, notes = _best_sides(frame, rule, condition, vals, higher)
        b_label = "best alternative"
    else:
        a_rows = frame[matches(frame, rule["a"])]
        if "b_value" in rule:
            b_label = str(rule["b_value"])
            a_vals, = fill_failures([_raw(a_rows, metric, rule.get("a_plus"), transform)],
                                    [a_rows], higher)
            a = _by_seed(a_rows, keys, a_vals)
            b = pd.Series(float(rule["b_value"]), index=a.index)
            rate = "constant" if is_rate else ""
        else:
            b_rows = a_rows if "b_metric" in rule else frame[matches(frame, rule["b"])]
            b_label = rule["b_metric"] if "b_metric" in rule else _label(rule["b"])
            a_vals, b_vals = fill_failures(
                [_raw(a_rows, metric, rule.get("a_plus"), transform),
                 _raw(b_rows, rule.get("b_metric", metric), rule.get("b_plus"), transform)],
                [a_rows, b_rows], higher)
            a, b = _by_seed(a_rows, keys, a_vals), _by_seed(b_rows, keys, b_vals)
            rate = "paired" if is_rate and "b_metric" not in rule else ""
    paired = pd.DataFrame({"a": a, "b": b}).dropna()
    paired["d"] = paired["a"] - paired["b"]
    if claim in ("worse", "best") and higher:
        paired["d"] = -paired["d"]

    a_label = ("recommended: " + " | ".join(_label(f) for f in rule["a"]) if claim == "best"
               else _label(rule["a"]))
    result = RuleResult(rule.get("name", metric), metric, claim, margin, source,
                        a_label=a_label, b_label=b_label, transform=transform,
                        higher_is_better=higher, rate=rate)
    controls = rule.get("controls") or []
    grouped = (paired.groupby(level=list(range(len(condition)))) if condition
               else [((), paired)])
    for cond, part in grouped:
        cond = cond if isinstance(cond, tuple) else (cond,)
        labels = dict(zip(condition, map(str, cond)))
        g = _group(part, labels, result, metric, _chance(frame[matches(frame, labels)]))
        g.note = notes.get(tuple(map(str, cond)), "")
        g.control = next((c for c in controls
                          if all(_as_param(v) == labels.get(k)
                                 for k, v in c.items() if k not in ("expect", "why"))), None)
        (result.controls if g.control is not None else result.groups).append(g)
    return result


def _group(part: pd.DataFrame, condition: Dict[str, str], rule: RuleResult,
           metric: str, chance: Optional[float] = None) -> GroupResult:
    """One condition's effect, interval, test and (where it applies) why it is not testable."""
    d, a, b = part["d"], part["a"], part["b"]
    if rule.rate == "constant":
        p0 = float(b.iloc[0]) if len(b) else 0.0
        mean, low, high, p = stats.rate_test(a.to_numpy(), p0)
        test = "exact binomial"
    elif rule.rate == "paired":
        mean, low, high, p = stats.paired_rate_test(a.to_numpy(), b.to_numpy())
        test = "exact McNemar"
    else:
        mean = float(d.mean()) if len(d) else math.nan
        low, high = stats.mean_interval(d.to_numpy())
        p, test = stats.sign_flip_p(d.to_numpy()), "sign-flip"
    if rule.rate and rule.claim != "equivalent" and rule.higher_is_better:
        mean, low, high = -mean, -high, -low  # a - b, turned into "how much worse a is"
    g = GroupResult(condition, len(part), mean, low, high, stats.share_worse(d.to_numpy()), p,
                    float(a.mean()), float(b.mean()), test=test, d=d, a=a, b=b)
    g.chance = chance
    g.why = _not_testable(g, rule, metric, chance)
    return g


def _not_testable(g: GroupResult, rule: RuleResult, metric: str,
                  chance: Optional[float]) -> str:
    """Why this comparison cannot speak to the claim, or ''."""
    if g.n == 0:
        return "no paired seeds"
    if rule.rate == "paired" and g.a.sum() == 0 and g.b.sum() == 0:
        return "no events in either arm"
    if rule.rate or rule.claim == "best":  # events on one side at least: a rate test speaks
        return ""
    both = pd.concat([g.a, g.b])
    if np.ptp(both.to_numpy()) == 0 and rule.claim != "equivalent":
        return f"both arms at {both.iloc[0]:.3g} for every seed"
    if metric in CHANCE_METRICS and rule.higher_is_better:
        chance = 0.5 if metric.endswith("roc_auc") else chance
        if chance is not None and max(g.a_mean, g.b_mean) < chance + rule.margin:
            return f"both arms at chance ({chance:.3g})"
    return ""


def _chance(rows: pd.DataFrame) -> Optional[float]:
    """1 / the number of classes of these rows' task, when they share one."""
    if "task.n_classes" not in rows:
        return None
    classes = rows["task.n_classes"].astype(str).unique()
    return 1.0 / int(classes[0]) if len(classes) == 1 and classes[0].isdigit() else None


def _best_sides(frame: pd.DataFrame, rule: Mapping[str, Any], condition: List[str],
                values: pd.Series, higher: bool):
    """Claim best: per condition, the seed values of the best recommended choice and of the
    best other choice of ``rule['over']`` (best by the mean over seeds), and a note naming
    both. Picking the best alternative after seeing the data favours the alternative: the
    comparison is conservative for the claim."""
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
        means = part.groupby(level=len(condition)).mean().dropna()
        rec = is_rec.loc[cond] if condition else is_rec
        rec_means, other_means = means[rec.reindex(means.index)], means[~rec.reindex(means.index)]
        if rec_means.empty or other_means.empty:
            continue
        best_rec = rec_means.idxmax() if higher else rec_means.idxmin()
        best_other = other_means.idxmax() if higher else other_means.idxmin()
        for choice, parts in ((best_rec, a_parts), (best_other, b_parts)):
            seeds = part.xs(choice, level=len(condition))
            parts.append(seeds.set_axis(pd.MultiIndex.from_tuples(
                [(*cond, s) for s in seeds.index.get_level_values("seed")],
                names=condition + ["seed"])))
        notes[tuple(cond)] = f"{over}={best_rec} vs {over}={best_other}"
    empty = pd.Series(dtype=float)
    return (pd.concat(a_parts) if a_parts else empty,
            pd.concat(b_parts) if b_parts else empty, notes)


def outcome(rule: RuleResult, g: GroupResult) -> str:
    """A condition's outcome from its (corrected) test, mean and interval."""
    m, lo, hi, margin = g.mean, g.ci_low, g.ci_high, rule.margin
    if g.why:
        return NOT_TESTABLE
    if not math.isfinite(m):
        return UNDECIDED
    # Significant: the corrected test rejects 0 and the interval agrees (excludes 0 on the
    # mean's side), so a page never calls an effect real beside an interval that spans 0.
    significant = (math.isfinite(g.p_holm) and g.p_holm < stats.ALPHA
                   and (lo > 0 if m > 0 else hi < 0))
    within = -margin < lo and hi < margin
    if rule.claim == "equivalent":
        if within:
            return HOLDS
        return OPPOSITE if significant and abs(m) >= margin else UNDECIDED
    if rule.claim == "best":  # the effect: how much worse the recommendation is
        if hi < margin:
            return HOLDS
        return OPPOSITE if significant and m >= margin else UNDECIDED
    if significant and m > 0:
        return HOLDS if m >= margin else SMALLER
    if significant and m < 0:
        return OPPOSITE
    return NO_EFFECT if within else UNDECIDED


def decide(parts: List[RuleResult]) -> str:
    """Correct, decide every condition, word every part, and return the claim's word."""
    in_scope = [g for r in parts for g in r.groups]
    for g, p in zip(in_scope, stats.holm([g.p_value for g in in_scope])):
        g.p_holm = p
    controls = [g for r in parts for g in r.controls]
    for g, p in zip(controls, stats.holm([g.p_value for g in controls])):
        g.p_holm = p
    for r in parts:
        for g in r.groups + r.controls:
            g.outcome = outcome(r, g)
        r.pooled = _pooled(r)
    pooled = [r.pooled for r in parts if r.pooled is not None]
    for g, p in zip(pooled, stats.holm([g.p_value for g in pooled])):
        g.p_holm = p
    for r in parts:
        if r.pooled is not None:
            r.pooled.outcome = outcome(r, r.pooled)
        r.word, r.explanation = _part_word(r)
    return claim_word(parts)[0]


def _pooled(r: RuleResult) -> Optional[GroupResult]:
    """The effect over the in-scope conditions that can be tested: per seed the mean of their
    effects (0/1 outcomes: every model a trial). None when fewer than two can be tested."""
    groups = [g for g in r.groups if not g.why]
    if len(groups) < 2:
        return None
    cat = lambda attr: pd.concat([getattr(g, attr) for g in groups])  # noqa: E731
    if r.rate:
        part = pd.DataFrame({"a": cat("a").to_numpy(), "b": cat("b").to_numpy(),
                             "d": cat("d").to_numpy()})
    else:
        seed = lambda s: s.groupby(level="seed").mean()  # noqa: E731
        part = pd.DataFrame({"a": seed(cat("a")), "b": seed(cat("b")), "d": seed(cat("d"))})
    chances = {g.chance for g in groups}
    g = _group(part, {"pooled": f"{len(groups)} conditions"}, r, r.metric,
               chances.pop() if len(chances) == 1 else None)
    g.why = ""  # each condition pooled here can be tested: so can their pool
    return g


def _depends(r: RuleResult) -> Optional[str]:
    """Evidence that conditions differ: the strongest condition where the part holds against
    the weakest where it does not; their difference of effects (paired by seed) must have an
    interval that excludes 0."""
    held, other = r.held, [g for g in r.groups if g.outcome != HOLDS and not g.why]
    if not held or not other:
        return None
    top = max(held, key=lambda g: g.mean)
    low = min(other, key=lambda g: g.mean)
    if r.rate:
        lo = top.ci_low - low.ci_high
        diff = top.mean - low.mean
        if lo <= 0:
            return None
        return f"{top.label} vs {low.label}: effects differ by {fmt(diff)} (> 0 by their intervals)"
    d = pd.concat({"top": top.d.groupby(level="seed").mean(),
                   "low": low.d.groupby(level="seed").mean()}, axis=1).dropna()
    diff = d["top"] - d["low"]
    lo, hi = stats.mean_interval(diff.to_numpy())
    if not (lo > 0 or hi < 0):
        return None
    return (f"{top.label} vs {low.label}: effects differ by {fmt(float(diff.mean()))} "
            f"[{fmt(lo)}, {fmt(hi)}]")


def _part_word(r: RuleResult) -> Tuple[str, str]:
    if not r.groups:
        return NOT_RUN, "no paired runs to compare"
    groups = [g for g in r.groups if not g.why]  # the conditions that can be tested
    untested = [g.label for g in r.groups if g.why]
    aside = f" (not testable: {summarise(untested)})" if untested else ""
    if not groups:
        r.rests_on = r.groups[0]
        return INCONCLUSIVE, "not testable: " + "; ".join(sorted({g.why for g in r.groups}))
    if all(g.outcome == HOLDS for g in groups):
        r.rests_on = max(groups, key=lambda g: g.mean) if r.claim == "worse" else \
            max(groups, key=lambda g: g.ci_high)
        return REPRODUCED, ("holds in every condition" if len(groups) > 1 else "holds") + aside
    differ = _depends(r)
    if differ:
        r.rests_on = max(r.held, key=lambda g: g.mean)
        return DEPENDS, (f"holds in {summarise([g.label for g in r.held])}, not in "
                         f"{summarise([g.label for g in groups if g.outcome != HOLDS])}; "
                         f"{differ}")
    g = r.pooled or groups[0]
    r.rests_on = g
    where = (f"pooled over its conditions{aside}: " if r.pooled is not None
             else f"{g.label}{aside}: " if untested else "")
    if g.outcome == HOLDS:
        return REPRODUCED, f"{where}holds"
    if g.outcome in (NO_EFFECT, SMALLER):
        text = ("no effect (the interval lies within ±margin)" if g.outcome == NO_EFFECT
                else f"a real effect, smaller than the margin {fmt(r.margin)}")
        return NOT_REPRODUCED, where + text
    if g.outcome == OPPOSITE:
        return CONTRADICTED, f"{where}the opposite holds"
    if g.outcome == NOT_TESTABLE:
        return INCONCLUSIVE, f"{where}not testable: {g.why}"
    return INCONCLUSIVE, f"{where}undecided"


def claim_word(parts: List[RuleResult]) -> Tuple[str, str]:
    """The claim's word from its parts' words, and which parts failed."""
    run = [r for r in parts if r.word != NOT_RUN]
    if not run:
        return INCONCLUSIVE, "no part could be compared"
    words = {r.word for r in run}
    failed = [r for r in run if r.word not in (REPRODUCED, DEPENDS)]
    named = "; ".join(f"{r.name}: {r.word}" for r in failed)
    if words == {REPRODUCED}:
        return REPRODUCED, "every part reproduced"
    if not failed:
        return DEPENDS, "every part holds, some only in some conditions"
    if len(failed) < len(run):
        return PARTLY, f"not reproduced: {named}"
    if CONTRADICTED in words:
        return CONTRADICTED, named
    if words == {NOT_REPRODUCED}:
        return NOT_REPRODUCED, named
    return INCONCLUSIVE, named


def summarise(labels: List[str], limit: int = 3) -> str:
    """A list of conditions, cut to ``limit`` with a count ("3 of 6 conditions: ...")."""
    if len(labels) <= limit:
        return "; ".join(labels)
    return f"{len(labels)} conditions ({'; '.join(labels[:limit])}; ...)"


def fmt(v: Any) -> str:
    """3 significant digits, no exponent: ``<0.001`` for tiny magnitudes."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, (float, np.floating)):
        return str(v)
    if not math.isfinite(v):
        return "inf" if v == math.inf else ("-inf" if v == -math.inf else "n/a")
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return "<0.001" if v > 0 else ">-0.001"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{v:.{digits}f}"
