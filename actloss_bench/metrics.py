"""Evaluation metrics as pure NumPy functions (tests check each against scikit-learn).

They run once per epoch on the validation split, so they avoid scikit-learn's per-call input
validation (about a millisecond each, which adds up over hundreds of runs).
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

ECE_BINS = 15
_EPS = 1e-15
_REGRESSION_LOSSES = ("mse", "mae", "huber")


def probabilities(output: torch.Tensor, *, head: str, loss: str) -> np.ndarray:
    """Class probabilities ``(N, K)`` implied by a model's output, its head and its loss.

    A single output unit is read as P(class 1). A linear head's raw scores pass through the
    link its loss assumes (sigmoid/softmax); square/absolute losses fit the 0/1 targets
    directly, so their outputs are clipped to [0, 1] (and renormalised across classes).
    """
    out = output.detach().double()
    if head == "softmax":
        p = out
    elif head == "log_softmax":
        p = out.exp()
    elif head == "sigmoid" or (head == "linear" and loss in _REGRESSION_LOSSES):
        p = out.clamp(0, 1)
        if p.shape[1] > 1:  # one-vs-rest scores -> a distribution
            total = p.sum(1, keepdim=True)
            p = torch.where(total > 0, p / total.clamp_min(_EPS), 1.0 / p.shape[1])
    elif out.shape[1] == 1:
        p = torch.sigmoid(out)
    else:
        p = torch.softmax(out, dim=1)
    if p.shape[1] == 1:
        p = torch.cat([1 - p, p], dim=1)
    return p.numpy()


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in ``y`` (sklearn.metrics.balanced_accuracy_score)."""
    cm = _confusion(y, pred, k)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def f1_macro(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro F1 over classes seen in ``y`` or ``pred``; 0 where undefined (sklearn's default)."""
    cm = _confusion(y, pred, k)
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    labels = (cm.sum(0) + cm.sum(1)) > 0
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[labels].mean())


def minority_recall(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Recall of the rarest class in ``y``."""
    cm = _confusion(y, pred, k)
    support = cm.sum(1)
    rare = np.argmin(np.where(support > 0, support, np.iinfo(np.int64).max))
    return float(cm[rare, rare] / support[rare])


def _average_ranks(score: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's default,
    without its ~0.2 ms of per-call overhead)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = ((starts + ends + 1) / 2)[np.cumsum(new_group) - 1]
    return ranks


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y: np.ndarray, P: np.ndarray) -> float:
    """Binary AUC of P[:, 1]; multiclass: one-vs-rest macro average (sklearn's 'ovr')."""
    if P.shape[1] == 2:
        return _binary_auc(y == 1, P[:, 1])
    return float(np.mean([_binary_auc(y == c, P[:, c]) for c in range(P.shape[1])]))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as sklearn's average_precision_score sums it."""
    n_pos = positive.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, hits = score[order], positive[order].astype(float)
    # One point per distinct threshold: the last index of each run of tied scores.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(recall_gain * precision))


def reliability_bins(correct: np.ndarray, confidence: np.ndarray, n_bins: int = ECE_BINS):
    """Per equal-width bin [k/n, (k+1)/n): mean confidence, accuracy, count (empty bins NaN)."""
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(bins, weights=correct.astype(float), minlength=n_bins) / count
        conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
    return conf, acc, count


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray,
                               n_bins: int = ECE_BINS) -> float:
    """ECE over ``n_bins`` equal-width confidence bins: sum_b (n_b/N) |acc_b - conf_b|."""
    conf, acc, count = reliability_bins(correct, confidence, n_bins)
    return float(np.nansum(count * np.abs(acc - conf)) / len(confidence))


def brier(y: np.ndarray, P: np.ndarray) -> float:
    """Binary: mean (p1 - y)^2 (sklearn's brier_score_loss).

    Multiclass: mean over samples of sum_k (p_k - y_k)^2."""
    if P.shape[1] == 2:
        return float(np.mean((P[:, 1] - y) ** 2))
    onehot = np.eye(P.shape[1])[y]
    return float(np.mean(np.sum((P - onehot) ** 2, axis=1)))


def nll(y: np.ndarray, P: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped at 1e-15."""
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0))))


def classification_metrics(y: np.ndarray, P: np.ndarray) -> Dict[str, float]:
    """All classification metrics of DESIGN.md for labels ``y`` and probabilities ``P``."""
    k = P.shape[1]
    if not np.all(np.isfinite(P)):
        return {name: float("nan") for name in classification_metric_names(k)}
    pred = P.argmax(1)
    confidence = P.max(1)
    out = {
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred, k),
        "f1_macro": f1_macro(y, pred, k),
        "minority_recall": minority_recall(y, pred, k),
        "roc_auc": roc_auc(y, P),
        "ece": expected_calibration_error(pred == y, confidence),
        "brier": brier(y, P),
        "nll": nll(y, P),
        "mean_confidence": float(confidence.mean()),
        "pred_majority_fraction": float(np.bincount(pred, minlength=k).max() / len(pred)),
    }
    if k == 2:
        out["pr_auc"] = average_precision(y == 1, P[:, 1])
        out["ece_positive"] = expected_calibration_error(y == 1, P[:, 1])
    return out


def classification_metric_names(k: int):
    names = ["accuracy", "balanced_accuracy", "f1_macro", "minority_recall", "roc_auc", "ece",
             "brier", "nll", "mean_confidence", "pred_majority_fraction"]
    return names + (["pr_auc", "ece_positive"] if k == 2 else [])


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """MAE, RMSE, R^2 (sklearn's r2_score) and the spread of predictions relative to targets."""
    err = pred - y
    sst = np.sum((y - y.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "r2": float(1 - np.sum(err ** 2) / sst) if sst > 0 else float("nan"),
        "pred_std_ratio": float(np.std(pred) / (np.std(y) + _EPS)),
    }
