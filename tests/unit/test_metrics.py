"""Each metric against an independent reference: scikit-learn or a plain formula."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from actloss_bench.engine import metrics as m


@pytest.fixture(params=[0, 1, 2])
def binary_case(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.35 * y + 0.65 * rng.uniform(0, 1, 200), 0, 1)
    p1[:10] = 0.5  # ties
    return y, np.stack([1 - p1, p1], 1)


@pytest.fixture(params=[0, 1])
def multi_case(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[y]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, P


def test_binary_against_sklearn(binary_case):
    y, P = binary_case
    pred = P.argmax(1)
    got = m.classification_metrics(y, P)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P[:, 1]))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, P[:, 1]))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, P[:, 1]))
    assert got["nll"] == pytest.approx(skm.log_loss(y, P))


def test_multiclass_against_sklearn(multi_case):
    y, P = multi_case
    pred = P.argmax(1)
    got = m.classification_metrics(y, P)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P, multi_class="ovr"))
    assert got["nll"] == pytest.approx(skm.log_loss(y, P))
    brier_loop = np.mean([sum((P[i, k] - (y[i] == k)) ** 2 for k in range(4))
                          for i in range(len(y))])
    assert got["brier"] == pytest.approx(brier_loop)
    assert "pr_auc" not in got


def test_f1_counts_predicted_only_classes_like_sklearn():
    y = np.array([0, 0, 0, 1])
    pred = np.array([0, 2, 0, 1])  # class 2 is predicted but never true
    assert m.f1_macro(y, pred, 3) == pytest.approx(skm.f1_score(y, pred, average="macro"))


def _ece_reference(correct, conf, n_bins=15):
    """Plain loop over equal-width bins [k/15, (k+1)/15), the last bin closed."""
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        inside = (conf >= lo) & ((conf < hi) if k < n_bins - 1 else (conf <= hi))
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_ece_against_loop(multi_case):
    y, P = multi_case
    correct, conf = P.argmax(1) == y, P.max(1)
    assert m.expected_calibration_error(correct, conf) == pytest.approx(
        _ece_reference(correct, conf))


def test_ece_exact_small_case():
    # Two bins used: conf 0.9 (2 samples, 1 right) and conf 0.6 (2 samples, both right).
    correct = np.array([1, 0, 1, 1])
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    assert m.expected_calibration_error(correct, conf) == pytest.approx(
        0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))


def test_perfectly_calibrated_is_zero():
    conf = np.full(1000, 0.7)
    correct = np.r_[np.ones(700), np.zeros(300)]
    assert m.expected_calibration_error(correct, conf) == pytest.approx(0.0)


def test_majority_fraction_and_minority_recall():
    y = np.array([0, 0, 0, 0, 1, 1])
    P = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]])
    got = m.classification_metrics(y, P)
    assert got["pred_majority_fraction"] == pytest.approx(5 / 6)
    assert got["minority_recall"] == pytest.approx(0.5)


def test_regression_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    pred = y + rng.normal(scale=0.3, size=100)
    got = m.regression_metrics(y, pred)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m.regression_metrics(y, np.full(100, 3.0))["pred_std_ratio"] == 0.0


def test_non_finite_probabilities_give_nan_not_crash():
    P = np.array([[np.nan, np.nan], [0.5, 0.5]])
    got = m.classification_metrics(np.array([0, 1]), P)
    assert np.isnan(got["accuracy"]) and np.isnan(got["ece"])


@pytest.mark.parametrize("head,loss,out,expected", [
    ("linear", "bce_with_logits", [[0.0], [2.0]], [[0.5, 0.5], [0.1192, 0.8808]]),
    ("sigmoid", "bce", [[0.25]], [[0.75, 0.25]]),
    ("linear", "mse", [[1.4], [-0.2]], [[0.0, 1.0], [1.0, 0.0]]),
    ("softmax", "ce", [[0.2, 0.8]], [[0.2, 0.8]]),
    ("log_softmax", "nll", [[np.log(0.3), np.log(0.7)]], [[0.3, 0.7]]),
    ("linear", "ce", [[0.0, np.log(3.0)]], [[0.25, 0.75]]),
    ("linear", "mse", [[0.5, 0.5, 0.0]], [[0.5, 0.5, 0.0]]),
])
def test_probabilities_follow_head_and_loss(head, loss, out, expected):
    got = m.probabilities(torch.tensor(out), head=head, loss=loss)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_average_ranks_match_scipy_with_ties():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    for score in [rng.random(50), rng.integers(0, 5, 200).astype(float), np.ones(7),
                  np.array([0.3])]:
        np.testing.assert_array_equal(m._average_ranks(score), rankdata(score))


def test_auc_with_tied_scores_against_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.random(300), 1)  # many ties
    assert m.roc_auc(y, np.c_[1 - score, score]) == pytest.approx(skm.roc_auc_score(y, score))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("k", [2, 4])
def test_rows_equal_each_model_alone(k):
    """Vectorised seeds score S models in one call: each row as if scored alone, including a
    row with a class missing from y and a row with non-finite probabilities."""
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, (4, 120))
    y[1] = np.minimum(y[1], k - 2)  # class k-1 absent from row 1
    logits = rng.normal(size=(4, 120, k))
    P = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    P[2, 5, 0] = np.nan
    rows = m.classification_metrics_rows(y, P)
    for s in range(4):
        alone = m.classification_metrics(y[s], P[s])
        assert rows[s].keys() == alone.keys()
        np.testing.assert_allclose(list(rows[s].values()), list(alone.values()), rtol=1e-12)
    assert np.isnan(rows[2]["accuracy"]) and not np.isnan(rows[3]["accuracy"])
    assert rows[1]["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(y[1], P[1].argmax(1)))


def test_regression_rows_equal_each_model_alone():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3, 60))
    pred = y + rng.normal(size=(3, 60))
    pred[2] = 1.0
    rows = m.regression_metrics_rows(y, pred)
    for s in range(3):
        assert rows[s] == pytest.approx(m.regression_metrics(y[s], pred[s]))
        assert rows[s]["r2"] == pytest.approx(skm.r2_score(y[s], pred[s]))


def test_row_ranks_and_auc_match_per_row():
    from scipy.stats import rankdata

    rng = np.random.default_rng(4)
    score = np.round(rng.random((3, 40)), 1)  # ties within rows
    np.testing.assert_array_equal(m._average_ranks(score), rankdata(score, axis=1))
    positive = rng.random((3, 40)) < 0.3
    positive[2] = False  # one class only: AUC undefined
    auc = m._binary_auc(positive, score)
    for s in range(2):
        assert auc[s] == pytest.approx(skm.roc_auc_score(positive[s], score[s]))
        assert m.average_precision(positive, score)[s] == pytest.approx(
            skm.average_precision_score(positive[s], score[s]))
    assert np.isnan(auc[2]) and np.isnan(m.average_precision(positive, score)[2])


def test_temperature_scaling_fits_on_validation_and_fixes_overconfidence():
    """Labels drawn from softmax(z); the model reports softmax(3 z): overconfident by a
    temperature of 3, which the fit recovers and which brings ECE down."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 4000, 3))
    true_p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    y = np.array([[rng.choice(3, p=p) for p in row] for row in true_p])
    reported = np.exp(3 * z) / np.exp(3 * z).sum(-1, keepdims=True)
    T = m.fit_temperature(y[:, :2000], reported[:, :2000])
    assert T == pytest.approx([3.0, 3.0], rel=0.15)
    scaled = m.scale_temperature(reported[:, 2000:], T)
    before = m.expected_calibration_error(reported[:, 2000:].argmax(-1) == y[:, 2000:],
                                          reported[:, 2000:].max(-1))
    after = m.expected_calibration_error(scaled.argmax(-1) == y[:, 2000:], scaled.max(-1))
    assert (after < before / 3).all()
    # Scaling by a temperature never changes the predicted class.
    assert (scaled.argmax(-1) == reported[:, 2000:].argmax(-1)).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((2, 150, 4)) < 0.4).astype(int)
    P = np.clip(0.4 * y + 0.6 * rng.random(y.shape), 0, 1)
    P[0, :, 3] = 0.2  # label 3 of model 0: never predicted (F1 0, as sklearn's default)
    rows = m.multilabel_metrics_rows(y, P)
    for k in range(2):
        pred = (P[k] >= 0.5).astype(int)
        row = rows[k]
        assert row["subset_accuracy"] == pytest.approx(skm.accuracy_score(y[k], pred))
        assert row["hamming_loss"] == pytest.approx(skm.hamming_loss(y[k], pred))
        assert row["f1_macro"] == pytest.approx(
            skm.f1_score(y[k], pred, average="macro", zero_division=0))
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y[k], P[k], average="macro"))
        for j in range(4):
            assert row[f"f1_label_{j}"] == pytest.approx(
                skm.f1_score(y[k][:, j], pred[:, j], zero_division=0))
            assert row[f"ece_label_{j}"] == pytest.approx(
                m.expected_calibration_error(y[k][:, j] == 1, P[k][:, j]))
        assert row["ece"] == pytest.approx(np.mean([row[f"ece_label_{j}"] for j in range(4)]))
        assert row["nll"] == pytest.approx(skm.log_loss(y[k].ravel(), P[k].ravel()))
        assert row["brier"] == pytest.approx(skm.brier_score_loss(y[k].ravel(), P[k].ravel()))


def test_gaussian_nll_and_interval_coverage_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=(1, 5000)), np.zeros((1, 5000))
    var = np.full((1, 5000), 1.0)
    row = m.regression_metrics_rows(y, pred, var)[0]
    assert row["nll"] == pytest.approx(-stats.norm.logpdf(y[0]).mean())
    assert row["coverage_90"] == pytest.approx(0.9, abs=0.015)  # a calibrated interval
    assert row["interval_width_90"] == pytest.approx(2 * stats.norm.ppf(0.95))
    narrow = m.regression_metrics_rows(y, pred, var / 4)[0]
    assert narrow["coverage_90"] < 0.65 and narrow["nll"] > row["nll"]
