"""Evaluation metrics as pure NumPy functions (tests check each against scikit-learn).

Every metric takes one row per model: labels ``y`` of shape (S, N), predictions (S, N) or
probabilities (S, N, K), and returns one value per row. Vectorised seeds evaluate all S models
in one call; a sequential run is the case S = 1, so both paths share one implementation. A
single model's 1-D labels (and 2-D probabilities) are accepted too and give plain floats.

They run once per epoch on the validation split, so they avoid scikit-learn's per-call input
validation (about a millisecond each, which adds up over hundreds of runs); per-row counts use
one ``bincount`` over all rows, each row's bins shifted past the previous row's.
"""

from __future__ import annotations

import functools
from typing import Dict, List

import numpy as np
import torch

from actloss_bench.engine.losses import LOSSES

ECE_BINS = 15
_EPS = 1e-15


def probabilities(output: torch.Tensor, *, head: str, loss: str) -> np.ndarray:
    """Class probabilities ``(..., N, K)`` implied by a model's output, its head and its loss.

    A single output unit is read as P(class 1). A linear head's raw scores pass through the
    link its loss assumes (sigmoid/softmax); square/absolute losses fit the 0/1 targets
    directly, so their outputs are clipped to [0, 1] (and renormalised across classes).
    """
    out = output.detach().double()
    if head == "softmax":
        p = out
    elif head == "log_softmax":
        p = out.exp()
    elif head == "sigmoid" or (head == "linear" and LOSSES[loss].square):
        p = out.clamp(0, 1)
        if p.shape[-1] > 1:  # one-vs-rest scores -> a distribution
            total = p.sum(-1, keepdim=True)
            p = torch.where(total > 0, p / total.clamp_min(_EPS), 1.0 / p.shape[-1])
    elif out.shape[-1] == 1:
        p = torch.sigmoid(out)
    else:
        p = torch.softmax(out, dim=-1)
    if p.shape[-1] == 1:
        p = torch.cat([1 - p, p], dim=-1)
    return p.numpy()


def label_probabilities(output: torch.Tensor, *, head: str, loss: str) -> np.ndarray:
    """Multilabel: each label's probability ``(..., N, L)``. Softmax-type heads and losses give
    probabilities that compete across labels (the mistake they are); a linear head's scores go
    through the sigmoid its BCE-type loss assumes; square/absolute losses are clipped to [0, 1]."""
    out = output.detach().double()
    if head in ("softmax", "sigmoid"):
        p = out
    elif head == "log_softmax":
        p = out.exp()
    elif LOSSES[loss].square:
        p = out
    elif LOSSES[loss].targets == "distribution":
        p = torch.softmax(out, dim=-1)
    else:
        p = torch.sigmoid(out)
    return p.clamp(0, 1).numpy()


def _rowwise(metric):
    """Let a row-wise metric take one model's arrays too: a 1-D first argument means one row,
    and the result comes back without the row axis (a float for a scalar metric)."""
    @functools.wraps(metric)
    def wrapper(first, *args, **kwargs):
        if np.ndim(first) != 1:
            return metric(first, *args, **kwargs)
        lift = [a[None] if isinstance(a, np.ndarray) else a for a in args]
        out = metric(np.asarray(first)[None], *lift, **kwargs)
        if isinstance(out, tuple):
            return tuple(o[0] for o in out)
        return float(out[0]) if np.ndim(out[0]) == 0 else out[0]
    return wrapper


def _row_bincount(index: np.ndarray, length: int, weights=None) -> np.ndarray:
    """``bincount`` of each row of ``index`` (values in [0, length)) in one call: (S, length)."""
    rows = index.shape[0]
    shifted = index + np.arange(rows)[:, None] * length if rows > 1 else index
    w = None if weights is None else weights.ravel()
    return np.bincount(shifted.ravel(), weights=w, minlength=rows * length).reshape(rows, length)


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(S, k, k) counts, true class on axis 1 and predicted class on axis 2."""
    return _row_bincount(y * k + pred, k * k).reshape(-1, k, k)


def _diagonal(cm: np.ndarray) -> np.ndarray:
    return np.diagonal(cm, axis1=1, axis2=2)


@_rowwise
def accuracy(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.mean(y == pred, axis=1)


def _balanced_accuracy(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(2)
    present = support > 0
    recall = np.divide(_diagonal(cm), support, out=np.zeros(support.shape), where=present)
    return recall.sum(1) / present.sum(1)


def _f1_macro(cm: np.ndarray) -> np.ndarray:
    tp = _diagonal(cm).astype(float)
    predicted, actual = cm.sum(1), cm.sum(2)
    labels = (predicted + actual) > 0
    denom = predicted + actual  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.sum(1) / labels.sum(1)  # f1 is 0 outside ``labels``


def _minority_recall(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(2)
    rare = np.argmin(np.where(support > 0, support, np.iinfo(np.int64).max), axis=1)
    rows = np.arange(len(cm))
    return cm[rows, rare, rare] / support[rows, rare]


@_rowwise
def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Mean recall over the classes present in ``y`` (sklearn.metrics.balanced_accuracy_score)."""
    return _balanced_accuracy(_confusion(y, pred, k))


@_rowwise
def f1_macro(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 over classes seen in ``y`` or ``pred``; 0 where undefined (sklearn's default)."""
    return _f1_macro(_confusion(y, pred, k))


@_rowwise
def minority_recall(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Recall of the rarest class in ``y``."""
    return _minority_recall(_confusion(y, pred, k))


def _ascending(score: np.ndarray) -> np.ndarray:
    """Each row's argsort. Not a stable sort (twice as fast): ranks and precision-recall points
    are per run of tied scores, which does not depend on the order inside a run."""
    return np.argsort(score, axis=1)


@_rowwise
def _average_ranks(score: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """1-based ranks within each row, ties sharing their average rank (scipy.stats.rankdata's
    default, without its ~0.2 ms of per-call overhead). ``order``: ``_ascending(score)``."""
    rows, n = score.shape
    order = _ascending(score) if order is None else order
    s = np.take_along_axis(score, order, 1)
    new_group = np.ones((rows, n), dtype=bool)  # every row starts a group
    new_group[:, 1:] = s[:, 1:] != s[:, :-1]
    flat = new_group.ravel()
    starts = np.flatnonzero(flat)
    ends = np.r_[starts[1:], rows * n]  # a group ends where the next starts (or its row ends)
    mean_rank = (starts + ends + 1) / 2 - (starts // n) * n  # positions counted within the row
    ranks = np.empty((rows, n))
    np.put_along_axis(ranks, order, mean_rank[np.cumsum(flat) - 1].reshape(rows, n), 1)
    return ranks


@_rowwise
def _binary_auc(positive: np.ndarray, score: np.ndarray,
                order: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half); NaN for a row with
    one class only."""
    n_pos = positive.sum(1)
    n_neg = positive.shape[1] - n_pos
    rank_sum = np.where(positive, _average_ranks(score, order), 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos == 0) | (n_neg == 0), np.nan, auc)


@_rowwise
def roc_auc(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Binary AUC of P[..., 1]; multiclass: one-vs-rest macro average (sklearn's 'ovr')."""
    k = P.shape[-1]
    if k == 2:
        return _binary_auc(y == 1, P[..., 1])
    return np.mean([_binary_auc(y == c, P[..., c]) for c in range(k)], axis=0)


@_rowwise
def average_precision(positive: np.ndarray, score: np.ndarray,
                      order: np.ndarray | None = None) -> np.ndarray:
    """Area under the precision-recall curve as sklearn's average_precision_score sums it.
    ``order``: ``_ascending(score)``, read backwards (highest score first)."""
    rows, n = score.shape
    n_pos = positive.sum(1)
    descending = (_ascending(score) if order is None else order)[:, ::-1]
    s = np.take_along_axis(score, descending, 1)
    tp = np.cumsum(np.take_along_axis(positive, descending, 1), axis=1, dtype=float)
    # One point per distinct threshold: the last index of each run of tied scores.
    last = np.ones((rows, n), dtype=bool)
    last[:, :-1] = s[:, 1:] != s[:, :-1]
    row, col = np.nonzero(last)
    tp_at = tp[row, col]
    previous = np.r_[0.0, tp_at[:-1]]
    previous[np.r_[True, row[1:] != row[:-1]]] = 0.0  # each row's first point starts from 0
    precision = tp_at / (col + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall_gain = (tp_at - previous) / n_pos[row]
    ap = np.bincount(row, weights=recall_gain * precision, minlength=rows)
    return np.where(n_pos == 0, np.nan, ap)


def _argmax_max(P: np.ndarray):
    """``P.argmax(-1), P.max(-1)`` (first index among ties), one class at a time: numpy's
    reductions over a short last axis are ~10x slower than K elementwise passes."""
    best, pred = P[..., 0].copy(), np.zeros(P.shape[:-1], dtype=np.int64)
    for c in range(1, P.shape[-1]):
        better = P[..., c] > best
        pred[better] = c
        np.maximum(best, P[..., c], out=best)
    return pred, best


@_rowwise
def reliability_bins(correct: np.ndarray, confidence: np.ndarray, n_bins: int = ECE_BINS):
    """Per equal-width bin [k/n, (k+1)/n): mean confidence, accuracy, count (empty bins NaN);
    each (S, n_bins)."""
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = _row_bincount(bins, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = _row_bincount(bins, n_bins, weights=correct.astype(float)) / count
        conf = _row_bincount(bins, n_bins, weights=confidence) / count
    return conf, acc, count


@_rowwise
def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray,
                               n_bins: int = ECE_BINS) -> np.ndarray:
    """ECE over ``n_bins`` equal-width confidence bins: sum_b (n_b/N) |acc_b - conf_b|."""
    conf, acc, count = reliability_bins(correct, confidence, n_bins)
    return np.nansum(count * np.abs(acc - conf), axis=1) / confidence.shape[1]


@_rowwise
def brier(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Binary: mean (p1 - y)^2 (sklearn's brier_score_loss).

    Multiclass: mean over samples of sum_k (p_k - y_k)^2."""
    if P.shape[-1] == 2:
        return np.mean((P[..., 1] - y) ** 2, axis=1)
    onehot = np.eye(P.shape[-1])[y]
    return np.mean(np.sum((P - onehot) ** 2, axis=2), axis=1)


@_rowwise
def nll(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood of the true class, probabilities clipped at 1e-15."""
    p_true = np.take_along_axis(P, y[..., None], axis=2)[..., 0]
    return -np.mean(np.log(np.clip(p_true, _EPS, 1.0)), axis=1)


@_rowwise
def majority_fraction(labels: np.ndarray, k: int) -> np.ndarray:
    """Share of the most frequent of ``k`` classes among ``labels``."""
    return _row_bincount(labels, k).max(1) / labels.shape[1]


def classification_metrics_rows(y: np.ndarray, P: np.ndarray) -> List[Dict[str, float]]:
    """All classification metrics of docs/tracking.md, one dict per row of ``y`` (S, N) and ``P``
    (S, N, K). A row with a non-finite probability gets NaN for every metric."""
    k = P.shape[-1]
    finite = np.isfinite(P).all(axis=(1, 2))
    if not finite.all():  # NaN would index outside the ECE bins: compute on a placeholder
        P = np.where(finite[:, None, None], P, 1.0 / k)
    pred, confidence = _argmax_max(P)
    cm = _confusion(y, pred, k)
    order = _ascending(P[..., 1]) if k == 2 else None  # shared by ROC AUC and PR AUC
    columns = {
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": _balanced_accuracy(cm),
        "f1_macro": _f1_macro(cm),
        "minority_recall": _minority_recall(cm),
        "roc_auc": roc_auc(y, P) if k > 2 else _binary_auc(y == 1, P[..., 1], order),
        "ece": expected_calibration_error(pred == y, confidence),
        "brier": brier(y, P),
        "nll": nll(y, P),
        "mean_confidence": confidence.mean(1),
        "pred_majority_fraction": majority_fraction(pred, k),
    }
    if k == 2:
        columns["pr_auc"] = average_precision(y == 1, P[..., 1], order)
        columns["ece_positive"] = expected_calibration_error(y == 1, P[..., 1])
    values = np.where(finite, np.array(list(columns.values())), np.nan).T.tolist()
    return [dict(zip(columns, row)) for row in values]


def _label_sets(y: np.ndarray) -> np.ndarray:
    """Each sample's 0/1 label vector (S, N, L) as one integer (S, N)."""
    return (y.astype(np.int64) << np.arange(y.shape[-1])).sum(-1)


def _majority_set_fraction(sets: np.ndarray) -> np.ndarray:
    return np.array([np.unique(row, return_counts=True)[1].max() / len(row) for row in sets])


def multilabel_metrics_rows(y: np.ndarray, P: np.ndarray) -> List[Dict[str, float]]:
    """Multilabel metrics, one dict per row of 0/1 labels ``y`` (S, N, L) and label
    probabilities ``P`` (S, N, L); a label is predicted when its probability is >= 0.5.

    subset accuracy (every label right), Hamming loss (share of wrong label entries), macro F1
    over labels (0 where undefined, as scikit-learn), ROC AUC macro over labels with both
    classes, ECE of each label's positive-class probability and their mean, Brier and NLL
    averaged over labels, and per label ``f1_label_<j>`` and ``ece_label_<j>``. The share of
    the most frequent predicted label set (pred_majority_fraction) and true label set
    (data_majority_fraction, not logged) feed the collapse detector."""
    L = P.shape[-1]
    finite = np.isfinite(P).all(axis=(1, 2))
    P = np.where(finite[:, None, None], P, 0.5)
    y = y.astype(np.int64)
    pred = (P >= 0.5).astype(np.int64)
    tp = (pred & y).sum(1).astype(float)  # (S, L)
    denom = pred.sum(1) + y.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    ece = np.stack([expected_calibration_error(y[..., j] == 1, P[..., j]) for j in range(L)], 1)
    auc = np.stack([_binary_auc(y[..., j] == 1, P[..., j]) for j in range(L)], 1)
    p_true = np.clip(np.where(y == 1, P, 1 - P), _EPS, 1.0)
    columns = {
        "subset_accuracy": (pred == y).all(-1).mean(1),
        "hamming_loss": (pred != y).mean((1, 2)),
        "f1_macro": f1.mean(1),
        "roc_auc": np.nanmean(auc, axis=1),  # labels with both classes present
        "ece": ece.mean(1),
        "brier": ((P - y) ** 2).mean((1, 2)),
        "nll": -np.log(p_true).mean((1, 2)),
        "pred_majority_fraction": _majority_set_fraction(_label_sets(pred)),
        **{f"f1_label_{j}": f1[:, j] for j in range(L)},
        **{f"ece_label_{j}": ece[:, j] for j in range(L)},
    }
    values = np.where(finite, np.array(list(columns.values())), np.nan).T.tolist()
    rows = [dict(zip(columns, row)) for row in values]
    for row, fraction in zip(rows, _majority_set_fraction(_label_sets(y))):
        row["data_majority_fraction"] = float(fraction)
    return rows


def classification_metrics(y: np.ndarray, P: np.ndarray) -> Dict[str, float]:
    """All classification metrics of docs/tracking.md for one model's labels ``y`` and
    ``P`` (N, K)."""
    return classification_metrics_rows(y[None], P[None])[0]


Z90 = 1.6448536269514722  # the standard normal's 95th percentile: a central 90% interval


def regression_metrics_rows(y: np.ndarray, pred: np.ndarray,
                            var: np.ndarray | None = None) -> List[Dict[str, float]]:
    """MAE, RMSE, R^2 (sklearn's r2_score) and the spread of predictions relative to targets,
    one dict per row of ``y`` and ``pred`` (S, N). With predictive variances ``var`` (S, N) or
    (S, 1) also: the Gaussian NLL of the targets (constant included, as GaussianNLLLoss's
    full=True) and the share of targets inside the central 90% interval, with its mean width."""
    err = pred - y
    sse = np.sum(err ** 2, axis=1)
    sst = np.sum((y - y.mean(1, keepdims=True)) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 0, 1 - sse / sst, np.nan)
    columns = {
        "mae": np.mean(np.abs(err), axis=1),
        "rmse": np.sqrt(np.mean(err ** 2, axis=1)),
        "r2": r2,
        "pred_std_ratio": np.std(pred, axis=1) / (np.std(y, axis=1) + _EPS),
    }
    if var is not None:
        var = np.broadcast_to(np.maximum(var, 1e-6), err.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            columns["nll"] = np.mean(0.5 * (np.log(2 * np.pi * var) + err ** 2 / var), axis=1)
            sd = np.sqrt(var)
            columns["coverage_90"] = np.mean(np.abs(err) <= Z90 * sd, axis=1)
            columns["interval_width_90"] = np.mean(2 * Z90 * sd, axis=1)
    return [dict(zip(columns, row)) for row in np.array(list(columns.values())).T.tolist()]


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """Regression metrics of one model's targets and predictions (N,)."""
    return regression_metrics_rows(y[None], pred[None])[0]


# Temperatures tried when fitting (Guo et al. 2017 fit one scalar by NLL on held-out data): a
# log grid fine enough that the NLL at its best point is within ~0.1% of the optimum.
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))


def scale_temperature(P: np.ndarray, T) -> np.ndarray:
    """Probabilities ``P`` (S, N, C) with their log-probabilities divided by ``T`` (S,) and
    renormalised: temperature scaling for any head (on logits it is softmax(z / T))."""
    logits = np.log(np.clip(P, _EPS, 1.0)) / np.asarray(T, dtype=float)[:, None, None]
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def fit_temperature(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per model, the temperature from :data:`TEMPERATURES` with the lowest NLL of labels
    ``y`` (S, N) under ``P`` (S, N, C): fitted on the validation split only."""
    losses = np.stack([nll(y, scale_temperature(P, np.full(len(P), t))) for t in TEMPERATURES])
    return TEMPERATURES[np.nanargmin(np.where(np.isfinite(losses), losses, np.inf), axis=0)]
