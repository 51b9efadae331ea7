"""The verdict logic on synthetic model tables, one per outcome, and its statistics against
scipy and hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from actloss_bench.engine.protocol import select_lr
from actloss_bench.report.verdict import (CONTRADICTED, DEPENDS, HOLDS, INCONCLUSIVE, NO_EFFECT,
                                          NOT_REPRODUCED, OPPOSITE, REPRODUCED, bootstrap_ci,
                                          decide, evaluate_rule, holm, share_worse, sign_flip_p,
                                          wilson)


def table(effects, noise=0.01, seeds=10, status=None):
    """Models of cells act=bad/good per condition 'depth', accuracy(bad) = good - effect."""
    rng = np.random.default_rng(0)
    rows = []
    for depth, effect in effects.items():
        for seed in range(seeds):
            base = 0.9 + rng.normal(0, noise)
            rows.append({"activation": "good", "model.depth": str(depth), "seed": seed,
                         "status": "ok", "test/accuracy": base})
            rows.append({"activation": "bad", "model.depth": str(depth), "seed": seed,
                         "status": "ok", "test/accuracy": base - effect + rng.normal(0, noise)})
    return pd.DataFrame(rows)


RULE = {"metric": "test/accuracy", "claim": "worse", "a": {"activation": "bad"},
        "b": {"activation": "good"}, "margin": 0.05, "condition": ["model.depth"]}


def verdict(frame, *rules):
    results = [evaluate_rule(frame, r) for r in rules or [RULE]]
    decide(results)
    return results[0] if len(results) == 1 else results


def test_reproduced_everywhere():
    r = verdict(table({2: 0.2, 8: 0.3}))
    assert r.verdict == REPRODUCED
    assert [g.outcome for g in r.groups] == [HOLDS, HOLDS]
    assert r.groups[0].mean == pytest.approx(0.2, abs=0.01)
    assert r.groups[0].p_worse == 1.0 and r.groups[0].n == 10


def test_not_reproduced_when_every_condition_shows_no_effect():
    r = verdict(table({2: 0.0, 8: 0.01}))
    assert r.verdict == NOT_REPRODUCED and {g.outcome for g in r.groups} == {NO_EFFECT}


def test_contradicted_when_the_opposite_holds():
    r = verdict(table({2: -0.2, 8: 0.0}))
    assert r.verdict == CONTRADICTED and r.groups[0].outcome == OPPOSITE
    assert "model.depth=2" in r.explanation


def test_depends_names_the_condition():
    r = verdict(table({2: 0.0, 8: 0.3}))
    assert r.verdict == DEPENDS and r.explanation.startswith("holds when model.depth=8")


def test_depends_when_one_condition_holds_and_another_is_undecided():
    frame = table({2: 0.0, 8: 0.3})
    bad2 = (frame["activation"] == "bad") & (frame["model.depth"] == "2")
    # depth 2: a mean effect at the margin, but half the seeds one way, half the other
    frame.loc[bad2, "test/accuracy"] = 0.9 - np.tile([0.25, -0.15], 5)
    r = verdict(frame)
    outcomes = {g.label: g.outcome for g in r.groups}
    assert outcomes["model.depth=8"] == HOLDS and outcomes["model.depth=2"] != HOLDS
    assert r.verdict == DEPENDS and "holds when model.depth=8" in r.explanation


def test_inconclusive_when_the_data_cannot_decide():
    """Effect at the margin with noise as large as the effect: neither held nor excluded."""
    r = verdict(table({2: 0.06, 8: 0.06}, noise=0.08, seeds=4))
    assert r.verdict == INCONCLUSIVE
    assert r.groups[0].ci_low < r.margin < r.groups[0].ci_high


def test_an_effect_below_the_margin_never_reproduces_even_if_significant():
    r = verdict(table({2: 0.03}, noise=0.001))
    assert r.groups[0].p_holm < 0.05 and r.groups[0].outcome == NO_EFFECT


def test_a_diverged_model_scores_the_worst_value_and_is_not_dropped():
    frame = table({2: 0.0}, noise=0.001)
    bad = frame.index[(frame["activation"] == "bad")][:6]
    frame.loc[bad, "status"] = "diverged"
    frame.loc[bad, "test/accuracy"] = np.nan
    r = verdict(frame)
    assert r.groups[0].n == 10  # every seed is paired, the diverged ones too
    assert r.groups[0].mean > 0  # and they count against the arm
    assert r.groups[0].a_mean == pytest.approx(frame["test/accuracy"].min() * 0.6
                                               + 0.9 * 0.4, abs=0.01)


def test_holm_corrects_across_every_condition_of_every_rule():
    frame = table({d: 0.06 for d in range(12)}, noise=0.01, seeds=10)
    alone = verdict(frame, {**RULE, "condition": []})
    many = verdict(frame)
    assert alone.groups[0].p_holm == alone.groups[0].p_value
    for g in many.groups:
        assert g.p_holm == pytest.approx(min(1.0, 12 * g.p_value)) or g.p_holm >= g.p_value


def test_holm_against_the_textbook_procedure():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone: 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm([float("nan"), 0.01])[0])


def test_sign_flip_p_is_exact_for_small_samples():
    d = np.array([0.1, 0.2, 0.3, 0.4])
    assert sign_flip_p(d, "greater") == pytest.approx(1 / 16)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples",
                                 alternative="two-sided").pvalue
    assert sign_flip_p(d, "two-sided") == pytest.approx(ref)
    assert sign_flip_p(np.zeros(5), "greater") == 1.0


def test_bootstrap_interval_against_scipy_and_degenerate_samples():
    x = np.random.default_rng(1).normal(size=20)
    low, high = bootstrap_ci(x, np.mean)
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=10_000,
                          random_state=np.random.default_rng(0)).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high))
    assert bootstrap_ci(np.full(5, 0.3), np.mean) == (0.3, 0.3)


def test_share_worse_counts_ties_half():
    assert share_worse(np.array([1.0, -1.0, 0.0, 2.0])) == pytest.approx(0.625)


def test_wilson_interval_stays_in_unit_range_and_matches_the_formula():
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # hand-computed
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 0.2775, abs=1e-4)
    low, high = wilson(3, 10)
    assert (low, high) == pytest.approx((0.1078, 0.6032), abs=1e-4)


def test_a_rate_against_a_constant_uses_the_wilson_interval():
    frame = table({2: 0.0})
    frame["collapsed"] = 0.0
    rule = {"metric": "collapsed", "claim": "worse", "higher_is_better": False,
            "a": {"activation": "bad"}, "b_value": 0.0, "margin": 0.5}
    r = verdict(frame, rule)
    assert (r.groups[0].ci_low, r.groups[0].ci_high) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert r.verdict == NOT_REPRODUCED


def test_lower_is_better_metrics_flip_the_sign():
    frame = table({2: 0.2})
    frame["test/ece"] = 1 - frame["test/accuracy"]
    r = verdict(frame, {**RULE, "metric": "test/ece", "higher_is_better": False})
    assert r.verdict == REPRODUCED and r.groups[0].mean == pytest.approx(0.2, abs=0.01)


def test_equivalence_with_b_value_and_b_metric():
    frame = table({2: 0.0}, noise=0.001)
    frame["test/other"] = frame["test/accuracy"] + 0.001
    eq = {"metric": "test/accuracy", "claim": "equivalent", "a": {"activation": "bad"},
          "b_metric": "test/other", "margin": 0.02}
    assert verdict(frame, eq).verdict == REPRODUCED
    far = {**eq, "b_metric": None, "b_value": 0.5}
    del far["b_metric"]
    assert verdict(frame, far).verdict == CONTRADICTED


def test_missing_metric_gives_no_pairs_and_an_inconclusive_rule():
    r = verdict(table({2: 0.2}), {**RULE, "metric": "test/nothing"})
    assert r.groups == [] and r.verdict == INCONCLUSIVE


def test_selection_looks_at_validation_only():
    """The test split would pick lr 0.1; validation picks 0.01, and selection gets no test
    column at all. A diverged model scores the worst validation value."""
    rows = []
    for seed in range(3):
        rows += [{"lr": 0.01, "seed": seed, "status": "ok", "val/accuracy": 0.9,
                  "test/accuracy": 0.7},
                 {"lr": 0.1, "seed": seed, "status": "ok", "val/accuracy": 0.85,
                  "test/accuracy": 0.95},
                 {"lr": 1.0, "seed": seed, "status": "diverged" if seed else "ok",
                  "val/accuracy": float("nan") if seed else 0.99, "test/accuracy": 0.99}]
    frame = pd.DataFrame(rows)
    assert select_lr(frame[["lr", "status", "val/accuracy"]], "val/accuracy") == 0.01
    losses = frame.assign(**{"val/loss": 1 - frame["val/accuracy"]})
    assert select_lr(losses[["lr", "status", "val/loss"]], "val/loss") == 0.01


def ranking_table(scores, seeds=10, noise=0.005):
    """Models of choices arm=<name> per activation: balanced accuracy = score + noise."""
    rng = np.random.default_rng(1)
    rows = []
    for activation, by_arm in scores.items():
        for seed in range(seeds):
            shared = rng.normal(0, noise)
            for arm, score in by_arm.items():
                rows.append({"arm": arm, "activation": activation, "seed": seed,
                             "status": "ok",
                             "test/balanced_accuracy": score + shared + rng.normal(0, noise)})
    return pd.DataFrame(rows)


BEST = {"metric": "test/balanced_accuracy", "claim": "best", "over": "arm",
        "a": [{"arm": "rec"}, {"arm": "rec2"}], "margin": 0.01, "condition": ["activation"]}


def test_best_holds_when_a_recommendation_ranks_first_or_tied():
    r = verdict(ranking_table({"relu": {"rec": 0.90, "rec2": 0.70, "other": 0.80},
                               "tanh": {"rec": 0.80, "rec2": 0.85, "other": 0.85}}), BEST)
    assert r.verdict == REPRODUCED and [g.outcome for g in r.groups] == [HOLDS, HOLDS]
    relu = r.groups[0]
    assert relu.note == "arm=rec vs arm=other"  # the best recommended vs the best other
    assert relu.mean == pytest.approx(-0.10, abs=0.01)  # the recommendation is better
    assert r.groups[1].note.startswith("arm=rec2 vs arm=other")


def test_best_shows_the_opposite_when_another_choice_is_clearly_better():
    r = verdict(ranking_table({"relu": {"rec": 0.70, "rec2": 0.60, "other": 0.90, "x": 0.5}}),
                BEST)
    assert r.verdict == CONTRADICTED and r.groups[0].outcome == OPPOSITE
    assert r.groups[0].mean == pytest.approx(0.20, abs=0.01)


def test_primary_all_combines_every_rules_conditions():
    from actloss_bench.report.verdict import combined

    frame = ranking_table({"relu": {"rec": 0.90, "rec2": 0.70, "other": 0.80},
                           "tanh": {"rec": 0.60, "rec2": 0.60, "other": 0.90}})
    results = [evaluate_rule(frame, {**BEST, "where": {"activation": a}, "name": a})
               for a in ("relu", "tanh")]
    decide(results)
    assert [r.verdict for r in results] == [REPRODUCED, CONTRADICTED]
    everything = combined(results, "every rule")
    assert everything.verdict == DEPENDS
    assert [g.label for g in everything.held] == ["rule=relu, activation=relu"]
