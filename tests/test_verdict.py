"""The verdict logic on synthetic run tables, one per outcome."""

import math

import numpy as np
import pandas as pd
import pytest

from actloss_bench.report.verdict import (DEPENDS, NOT_REPRODUCED, REPRODUCED, evaluate_rule,
                                          mean_ci)


def table(effects, noise=0.01, seeds=5):
    """Runs of cells act=bad/good per condition 'depth', with accuracy(bad) = 0.9 - effect."""
    rng = np.random.default_rng(0)
    rows = []
    for depth, effect in effects.items():
        for seed in range(seeds):
            base = 0.9 + rng.normal(0, noise)
            rows.append({"activation": "good", "model.depth": str(depth), "seed": seed,
                         "test/accuracy": base})
            rows.append({"activation": "bad", "model.depth": str(depth), "seed": seed,
                         "test/accuracy": base - effect + rng.normal(0, noise / 5)})
    return pd.DataFrame(rows)


RULE = {"metric": "test/accuracy", "claim": "worse", "a": {"activation": "bad"},
        "b": {"activation": "good"}, "margin": 0.05, "condition": ["model.depth"]}


def test_reproduced_everywhere():
    r = evaluate_rule(table({2: 0.2, 8: 0.3}), RULE)
    assert r.verdict == REPRODUCED and not r.contradicted
    assert [g.outcome for g in r.groups] == [REPRODUCED, REPRODUCED]
    assert r.groups[0].mean == pytest.approx(0.2, abs=0.01)


def test_not_reproduced_when_no_effect():
    r = evaluate_rule(table({2: 0.0, 8: 0.01}), RULE)
    assert r.verdict == NOT_REPRODUCED and not r.contradicted


def test_contradicted_when_the_opposite_holds():
    r = evaluate_rule(table({2: -0.2, 8: -0.1}), RULE)
    assert r.verdict == NOT_REPRODUCED and r.contradicted
    assert "contradicted" in r.explanation


def test_depends_names_the_condition():
    r = evaluate_rule(table({2: 0.0, 8: 0.3}), RULE)
    assert r.verdict == DEPENDS
    assert r.explanation == "holds when model.depth=8; not when model.depth=2 (no clear difference)"


def test_effect_below_margin_is_not_reproduced_even_if_significant():
    r = evaluate_rule(table({2: 0.03}, noise=0.001), RULE)
    assert r.groups[0].ci_low > 0 and r.verdict == NOT_REPRODUCED


def test_lower_is_better_metrics_flip_the_sign():
    runs = table({2: 0.2})
    runs["test/ece"] = 1 - runs["test/accuracy"]
    rule = {**RULE, "metric": "test/ece", "higher_is_better": False}
    assert evaluate_rule(runs, rule).verdict == REPRODUCED


def test_equivalence_with_b_value_and_b_metric():
    runs = table({2: 0.0}, noise=0.001)
    runs["test/logreg_accuracy"] = runs["test/accuracy"] + 0.001
    eq = {"metric": "test/accuracy", "claim": "equivalent", "a": {"activation": "bad"},
          "b_metric": "test/logreg_accuracy", "margin": 0.01}
    assert evaluate_rule(runs, eq).verdict == REPRODUCED
    far = {**eq, "b_value": 0.5}
    del far["b_metric"]
    r = evaluate_rule(runs, far)
    assert r.verdict == NOT_REPRODUCED and r.contradicted


def test_a_plus_offset_and_log_transform_and_where():
    runs = table({2: 0.0, 8: 0.0}, noise=0.0)
    runs["offset"] = 0.25
    rule = {"metric": "test/accuracy", "claim": "equivalent", "a": {"activation": "bad"},
            "b": {"activation": "good"}, "a_plus": "offset", "margin": 0.01}
    r = evaluate_rule(runs, rule)
    assert r.groups[0].mean == pytest.approx(0.25) and r.verdict == NOT_REPRODUCED
    runs["ratio"] = np.where(runs["activation"] == "bad", 1e-4, 1e-1)
    log_rule = {**RULE, "metric": "ratio", "transform": "log10", "margin": 1.0,
                "where": {"model.depth": 8}}
    r = evaluate_rule(runs, log_rule)
    assert [g.label for g in r.groups] == ["model.depth=8"]
    assert r.groups[0].mean == pytest.approx(3.0) and r.verdict == REPRODUCED


def test_single_seed_is_never_enough():
    r = evaluate_rule(table({2: 0.3}, seeds=1), RULE)
    assert r.groups[0].ci_low == -math.inf and r.verdict == NOT_REPRODUCED


def test_mean_ci_against_scipy_formula():
    from scipy import stats
    x = [0.1, 0.3, 0.2, 0.25]
    m, lo, hi = mean_ci(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert m == pytest.approx(np.mean(x)) and (lo, hi) == pytest.approx(ref)


def test_missing_metric_gives_no_pairs():
    r = evaluate_rule(table({2: 0.3}), {**RULE, "metric": "test/nope"})
    assert r.verdict == NOT_REPRODUCED and r.explanation == "no paired runs to compare"
