"""The report's statistics: intervals that cover at the seeds used, and exact tests checked
against scipy and hand-computed cases."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from actloss_bench.report import stats


@pytest.mark.parametrize("name, draw, mean, floor", [
    ("normal", lambda rng, shape: rng.normal(0.3, 1.0, shape), 0.3, 0.94),
    ("exponential", lambda rng, shape: rng.exponential(1.0, shape), 1.0, 0.92),
])
def test_the_mean_interval_covers_at_ten_seeds(name, draw, mean, floor):
    """Known effects simulated at the seeds a verdict uses (10 paired differences)."""
    rng = np.random.default_rng(123)
    samples = draw(rng, (2000, 10))
    hits = [lo <= mean <= hi for lo, hi in (stats.mean_interval(s, n_resamples=999, seed=i)
                                            for i, s in enumerate(samples))]
    assert np.mean(hits) >= floor, f"{name}: coverage {np.mean(hits):.3f} < {floor}"


def test_a_constant_sample_gets_a_degenerate_interval():
    assert stats.mean_interval(np.full(5, 0.3)) == (0.3, 0.3)


def test_the_interval_contains_students_t():
    x = np.random.default_rng(0).normal(size=12)
    lo, hi = stats.mean_interval(x)
    t = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert lo <= t[0] + 1e-12 and hi >= t[1] - 1e-12


def test_sign_flip_is_exact_for_small_samples():
    d = np.array([1.0, 2.0, 3.0, 4.0])  # every sign positive: 2 of 16 flips as extreme
    assert stats.sign_flip_p(d) == pytest.approx(2 / 16)
    assert stats.sign_flip_p(np.zeros(5)) == 1.0


def test_rate_against_a_constant_is_binomial_with_clopper_pearson():
    effect, lo, hi, p = stats.rate_test([1] * 3 + [0] * 7, 0.5)
    ci = sps.binomtest(3, 10).proportion_ci(method="exact")
    assert effect == pytest.approx(-0.2)
    assert (lo, hi) == pytest.approx((ci.low - 0.5, ci.high - 0.5))
    assert p == pytest.approx(sps.binomtest(3, 10, 0.5).pvalue)
    assert stats.rate_test([0] * 10, 0.0)[3] == 1.0
    assert stats.rate_test([1] + [0] * 9, 0.0)[3] == 0.0


def test_paired_rates_use_the_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    b = np.array([0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    diff, lo, hi, p = stats.paired_rate_test(a, b)
    assert diff == pytest.approx(0.5)
    assert p == pytest.approx(sps.binomtest(5, 5, 0.5).pvalue)
    assert lo < 0.5 < hi


def test_holm_matches_the_step_down_formula():
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx(
        [0.03, 0.06, 0.06, math.nan], nan_ok=True)


def test_share_worse_counts_ties_as_half():
    assert stats.share_worse(np.array([1.0, 0.0, -1.0, 2.0])) == pytest.approx(0.625)


def test_history_statistics_by_hand():
    flat = np.array([1.0, 0.5, 0.2, 0.2, 0.2, 0.2])
    assert stats.jitter(flat) == pytest.approx(0.0)
    zigzag = np.array([1.0, 0.5, 0.3, 0.1, 0.3, 0.1])  # at least 3 points: 0.1, 0.3, 0.1
    assert stats.jitter(zigzag) == pytest.approx(0.2 / (0.5 / 3))
    assert stats.HISTORY_STATS["curve_mean"](np.array([0.5, 0.7, 0.9])) == pytest.approx(0.7)
