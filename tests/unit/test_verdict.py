"""The verdict logic on synthetic model tables, each with a known answer: identical arms, an
effect below the margin, one above it, a control that fails, a rate against a constant, paired
rates, a diverged arm (the 9-of-10 case too), depends only with evidence, words per part."""

import numpy as np
import pandas as pd
import pytest

from actloss_bench.engine.protocol import select_lr
from actloss_bench.report.margins import margin_family, rule_margin
from actloss_bench.report.verdict import (CONTRADICTED, DEPENDS, HOLDS, INCONCLUSIVE, NO_EFFECT,
                                          NOT_REPRODUCED, NOT_TESTABLE, OPPOSITE, PARTLY,
                                          REPRODUCED, SMALLER, UNDECIDED, claim_word, decide,
                                          evaluate_rule, fmt, summarise)


def table(effects, noise=0.01, seeds=10, n_classes=2, base=0.9):
    """Models of cells act=bad/good per condition 'model.depth', accuracy(bad) = good - effect."""
    rng = np.random.default_rng(0)
    rows = []
    for depth, effect in effects.items():
        effect, spread = effect if isinstance(effect, tuple) else (effect, noise)
        for seed in range(seeds):
            good = base + rng.normal(0, noise)
            common = {"model.depth": str(depth), "seed": seed, "status": "ok",
                      "task.n_classes": str(n_classes)}
            rows.append({**common, "activation": "good", "test/accuracy": good})
            rows.append({**common, "activation": "bad",
                         "test/accuracy": good - effect + rng.normal(0, spread)})
    return pd.DataFrame(rows)


RULE = {"name": "bad is worse", "metric": "test/accuracy", "claim": "worse",
        "a": {"activation": "bad"}, "b": {"activation": "good"}, "condition": ["model.depth"]}


def parts(frame, *rules):
    results = [evaluate_rule(frame, r) for r in rules or [RULE]]
    word = decide(results)
    return results, word


def test_identical_arms_show_no_effect_with_equivalence():
    frame = table({2: 0.0, 8: 0.0}, noise=0.001)
    (r,), word = parts(frame)
    assert {g.outcome for g in r.groups} == {NO_EFFECT}
    assert r.word == NOT_REPRODUCED and word == NOT_REPRODUCED


def test_an_effect_below_the_margin_is_smaller_than_claimed_never_no_effect():
    # margin 0.02 (score family); a clear, significant effect of 0.01
    (r,), word = parts(table({2: 0.01, 8: 0.01}, noise=0.002))
    assert {g.outcome for g in r.groups} == {SMALLER}
    assert all(g.p_holm < 0.05 for g in r.groups)
    assert r.word == NOT_REPRODUCED and "smaller than the margin" in r.explanation


def test_an_effect_above_the_margin_holds_everywhere():
    (r,), word = parts(table({2: 0.2, 8: 0.3}))
    assert [g.outcome for g in r.groups] == [HOLDS, HOLDS]
    assert r.groups[0].mean == pytest.approx(0.2, abs=0.01)
    assert word == REPRODUCED and r.rests_on is r.groups[1]


def test_the_opposite_uses_the_same_corrected_test():
    (r,), word = parts(table({2: -0.2, 8: -0.2}))
    assert {g.outcome for g in r.groups} == {OPPOSITE} and word == CONTRADICTED


def test_depends_needs_an_interval_on_the_difference_that_excludes_zero():
    (r,), word = parts(table({2: 0.3, 8: 0.0}))
    assert [g.outcome for g in r.groups] == [HOLDS, NO_EFFECT]
    assert r.word == DEPENDS and "differ by" in r.explanation


def test_without_evidence_that_conditions_differ_the_pooled_effect_decides():
    # a tight 0.05 holds; a noisy 0.04 is undecided: no evidence the two differ -> pooled
    frame = table({2: 0.05, 8: (0.04, 0.06)}, noise=0.005)
    (r,), word = parts(frame)
    assert [g.outcome for g in r.groups] == [HOLDS, UNDECIDED]
    assert r.word != DEPENDS and r.pooled is not None
    assert r.explanation.startswith("pooled over its conditions")


def test_a_control_never_decides_and_a_failed_control_is_a_warning():
    rule = {**RULE, "controls": [{"model.depth": 2, "expect": "absent",
                                  "why": "shallow nets do not show it"}]}
    (r,), word = parts(table({2: 0.2, 8: 0.2}), rule)
    assert [g.label for g in r.groups] == ["model.depth=8"]
    assert r.controls[0].control_failed and r.warnings
    assert word == REPRODUCED  # the in-scope condition alone decides
    (ok,), _ = parts(table({2: 0.0, 8: 0.2}), rule)
    assert not ok.warnings and ok.word == REPRODUCED


def rate_table(bad_events, good_events, seeds=20, status=None):
    rows = []
    for seed in range(seeds):
        for arm, k in (("bad", bad_events), ("good", good_events)):
            rows.append({"arm": arm, "seed": seed, "status": "ok",
                         "collapsed": float(seed < k)})
    return pd.DataFrame(rows)


RATE_RULE = {"name": "bad collapses", "metric": "collapsed", "higher_is_better": False,
             "claim": "worse", "a": {"arm": "bad"}, "b_value": 0.0}


def test_a_rate_against_a_constant_uses_the_exact_binomial_test():
    (r,), _ = parts(rate_table(6, 0), RATE_RULE)
    g = r.groups[0]
    assert g.test == "exact binomial" and g.mean == pytest.approx(0.3)
    assert g.outcome == HOLDS  # 6 of 20 >= the rate margin 0.2, and any event rejects rate 0
    (r,), _ = parts(rate_table(3, 0), RATE_RULE)
    assert r.groups[0].outcome == SMALLER  # 3 of 20: real, below the margin
    (r,), _ = parts(rate_table(0, 0), RATE_RULE)
    assert r.groups[0].outcome == NO_EFFECT  # Clopper-Pearson upper 0.168 < 0.2
    (r,), _ = parts(rate_table(0, 0, seeds=10), RATE_RULE)
    assert r.groups[0].outcome not in (HOLDS, NO_EFFECT)  # upper 0.31: too few seeds to say


def test_paired_rates_use_mcnemar_and_no_events_is_not_testable():
    rule = {**RATE_RULE, "b": {"arm": "good"}}
    del rule["b_value"]
    (r,), _ = parts(rate_table(12, 0), rule)
    assert r.groups[0].test == "exact McNemar" and r.groups[0].outcome == HOLDS
    (r,), word = parts(rate_table(0, 0), rule)
    assert r.groups[0].outcome == NOT_TESTABLE and "no events" in r.groups[0].why
    assert word == INCONCLUSIVE


def test_both_arms_at_chance_are_not_testable():
    (r,), _ = parts(table({2: 0.0}, base=0.505))
    assert r.groups[0].outcome == NOT_TESTABLE and "chance" in r.groups[0].why


def test_a_diverged_model_scores_the_worst_value_of_both_arms():
    # 9 of 10 'bad' models diverge, the tenth beats 'good': bad must still lose
    frame = table({2: -0.05})
    bad = frame["activation"] == "bad"
    dead = bad & (frame["seed"] < 9)
    frame.loc[dead, "status"] = "diverged"
    frame.loc[dead, "test/accuracy"] = np.nan
    (r,), word = parts(frame)
    g = r.groups[0]
    assert g.n == 10 and g.mean > 0.0 and g.p_worse >= 0.8  # ties count half


def test_a_fully_diverged_arm_is_counted_not_dropped():
    frame = table({2: 0.0})
    bad = frame["activation"] == "bad"
    frame.loc[bad, "status"] = "diverged"
    frame.loc[bad, "test/accuracy"] = np.nan
    (r,), _ = parts(frame)
    assert r.groups[0].n == 10 and r.groups[0].mean > 0


def test_a_claim_is_judged_by_every_part():
    frame = table({2: 0.2, 8: 0.2})
    other = {**RULE, "name": "bad is better", "a": {"activation": "good"},
             "b": {"activation": "bad"}}
    results, word = parts(frame, RULE, other)
    assert [r.word for r in results] == [REPRODUCED, CONTRADICTED]
    assert word == PARTLY and "bad is better" in claim_word(results)[1]


def test_equivalence_holds_within_the_margin():
    rule = {**RULE, "claim": "equivalent"}
    (r,), word = parts(table({2: 0.0, 8: 0.0}, noise=0.001), rule)
    assert word == REPRODUCED


def test_best_claim_holds_when_the_recommendation_is_tied_with_the_best():
    rows = []
    for seed in range(10):
        for arm, acc in (("rec", 0.90), ("other", 0.905), ("poor", 0.7)):
            rows.append({"arm": arm, "seed": seed, "status": "ok", "task": "binary",
                         "test/balanced_accuracy": acc + 0.001 * seed})
    rule = {"name": "rec is best", "metric": "test/balanced_accuracy", "claim": "best",
            "a": [{"arm": "rec"}], "over": "arm", "condition": ["task"]}
    (r,), word = parts(pd.DataFrame(rows), rule)
    assert r.groups[0].note == "arm=rec vs arm=other" and word == REPRODUCED


def test_margins_come_from_one_table_and_an_override_must_say_why():
    assert rule_margin(RULE)[0] == 0.02 and "score" in margin_family("test/accuracy")
    assert rule_margin(RATE_RULE)[0] == 0.2
    with pytest.raises(ValueError, match="margin_why"):
        rule_margin({**RULE, "margin": 0.1})
    assert rule_margin({**RULE, "margin": 0.1, "margin_why": "the claim says 10 points"})[0] \
        == 0.1


def test_numbers_are_formatted_to_three_significant_digits():
    assert [fmt(x) for x in (0.0123456, 1.64e-4, -1.64e-4, 12.345, 0.5, 0.0)] == \
        ["0.0123", "<0.001", ">-0.001", "12.3", "0.500", "0"]
    assert summarise(["a", "b", "c", "d"]) == "4 conditions (a; b; c; ...)"


def test_select_lr_picks_the_best_mean_and_counts_divergence_as_worst():
    t = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "status": ["ok", "ok", "ok", "diverged"],
                      "val/accuracy": [0.8, 0.7, 0.99, np.nan]})
    assert select_lr(t, "val/accuracy") == 1.0  # (0.99 + worst 0.7) / 2 > 0.75
    t["val/accuracy"] = [0.8, 0.8, 0.6, np.nan]
    assert select_lr(t, "val/accuracy") == 0.1


def test_conditions_that_cannot_be_tested_are_left_out_of_the_pool():
    # depth 2: both arms at chance (not testable); depth 8: a clear effect
    frame = pd.concat([table({2: 0.0}, base=0.5, noise=0.001), table({8: 0.2})])
    (r,), word = parts(frame)
    assert [g.outcome for g in r.groups] == [NOT_TESTABLE, HOLDS]
    assert word == REPRODUCED and "not testable: model.depth=2" in r.explanation


def test_a_test_that_rejects_beside_an_interval_that_spans_zero_is_not_significant():
    # every seed worse, one by far: the sign-flip test rejects (p = 2/1024), the interval
    # (pulled wide by the one large difference) spans 0: the page must not call it real
    rows = []
    for seed, d in enumerate([5.0] + [0.1] * 9):
        common = {"seed": seed, "status": "ok", "task.n_classes": "2", "model.depth": "2"}
        rows += [{**common, "activation": "good", "test/accuracy": 10.0},
                 {**common, "activation": "bad", "test/accuracy": 10.0 - d}]
    (r,), _ = parts(pd.DataFrame(rows))
    g = r.groups[0]
    assert g.p_holm < 0.05 and g.ci_low < 0
    assert g.outcome == UNDECIDED
