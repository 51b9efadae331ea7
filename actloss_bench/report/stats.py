"""Every interval, test and transform the report uses, as pure functions over arrays.

Chosen for the seeds a verdict has (10 to 20 per arm), and checked by simulation in
``tests/unit/test_stats.py``:

- the mean of paired differences: the union of Student's t interval and the studentized
  (bootstrap-t) interval. At 10 seeds and 95% nominal the percentile bootstrap covers about
  90% (normal) and 88% (exponential) of the time and BCa no better; Student's t covers 95% and
  90%, the bootstrap-t 95% and 94%; their union covers at least 96% and 94%, so intervals that
  "no effect", "opposite" and equivalence rest on do not under-cover;
- its test: a two-sided sign-flip permutation test (exact up to 2^16 flips);
- a 0/1 rate against a constant: an exact binomial test with a Clopper-Pearson interval;
- paired 0/1 outcomes: an exact McNemar test (binomial on the discordant pairs), with a
  conservative interval for the difference of the two rates (each rate's Clopper-Pearson
  interval at 97.5%, so the pair covers at least 95%);
- Holm's step-down correction within a family of tests.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95
N_RESAMPLES = 9_999


def mean_interval(d: Sequence[float], *, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                  seed: int = 0) -> Tuple[float, float]:
    """Interval of the mean of ``d``: the union of Student's t and the bootstrap-t intervals.
    A constant sample (for example two arms that are the same computation) gets the
    degenerate interval [value, value]."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    m = float(d.mean())
    if n < 2 or np.ptp(d) == 0:
        return m, m
    se = float(d.std(ddof=1)) / math.sqrt(n)
    tq = float(stats.t.ppf(0.5 + level / 2, n - 1))
    resampled = d[np.random.default_rng(seed).integers(0, n, (n_resamples, n))]
    ses = resampled.std(axis=1, ddof=1) / math.sqrt(n)
    t = (resampled.mean(axis=1) - m) / np.where(ses > 0, ses, np.nan)
    t = t[np.isfinite(t)]
    q_low, q_high = np.quantile(t, [(1 - level) / 2, (1 + level) / 2]) if len(t) else (0, 0)
    return min(m - tq * se, m - q_high * se), max(m + tq * se, m - q_low * se)


def sign_flip_p(d: Sequence[float]) -> float:
    """Two-sided p-value of the mean of paired differences against 0, by flipping signs
    (``scipy.stats.permutation_test``; exact for up to 2^16 flips)."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    res = stats.permutation_test((d,), np.mean, permutation_type="samples",
                                 alternative="two-sided", n_resamples=2 ** 16,
                                 random_state=np.random.default_rng(0))
    return float(res.pvalue)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def rate_test(events: Sequence[float], p0: float) -> Tuple[float, float, float, float]:
    """A 0/1 rate against the constant ``p0``: (rate - p0, Clopper-Pearson interval low and
    high minus p0, two-sided exact binomial p)."""
    x = np.asarray(events, dtype=float)
    n, k = len(x), int(x.sum())
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    low, high = clopper_pearson(k, n)
    if p0 <= 0.0:  # a rate of exactly 0 admits no event: any event rejects it
        p = 0.0 if k > 0 else 1.0
    elif p0 >= 1.0:
        p = 0.0 if k < n else 1.0
    else:
        p = float(stats.binomtest(k, n, p0).pvalue)
    return k / n - p0, low - p0, high - p0, p


def paired_rate_test(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float, float]:
    """Paired 0/1 outcomes: (rate a - rate b, interval low, high, exact McNemar p)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    level = 1 - (1 - LEVEL) / 2  # each arm at 97.5%: the difference covers >= 95%
    a_low, a_high = clopper_pearson(int(a.sum()), n, level)
    b_low, b_high = clopper_pearson(int(b.sum()), n, level)
    return float(a.mean() - b.mean()), a_low - b_high, a_high - b_low, p


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


def share_worse(d: Sequence[float]) -> float:
    """The share of seeds where a is worse (d > 0), ties counting half."""
    d = np.asarray(d, dtype=float)
    return float(np.mean(d > 0) + 0.5 * np.mean(d == 0)) if len(d) else math.nan


def transform(values, name):
    """A metric as compared: itself, or its log10 (positive values only)."""
    if name is None:
        return values
    if name == "log10":
        return np.log10(values.where(values > 0))
    raise ValueError(f"unknown transform {name!r}; known: log10")


def jitter(values: np.ndarray, tail: float = 1 / 3) -> float:
    """Mean absolute epoch-to-epoch change over the last ``tail`` of training, relative to the
    mean level there: how much a converged curve still moves."""
    n = max(3, int(round(len(values) * tail)))
    last = values[-n:]
    if len(last) < 2 or not np.all(np.isfinite(last)):
        return float("nan")
    return float(np.mean(np.abs(np.diff(last))) / (np.mean(np.abs(last)) + 1e-12))


HISTORY_STATS = {
    "jitter": jitter,
    # The area under the validation curve, per epoch: at an equal budget, the faster learner
    # has the larger one.
    "curve_mean": lambda values: float(np.mean(values)) if len(values) else float("nan"),
}
