"""From a population's outputs to what is reported: metrics in metric units, predictive
variances, temperature scaling, test predictions, the learning curve's escape from chance, and
the scikit-learn baseline. Pure functions over tensors and arrays; training.py calls them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from actloss_bench.engine import metrics
from actloss_bench.engine.losses import LOSSES, gaussian_mean_var
from actloss_bench.engine.tasks import MULTILABEL, REGRESSION, Dataset


def target_entropy(label_smoothing: float, n_classes: int) -> float:
    """Entropy of a label-smoothed one-hot target: what soft-target CE and KL differ by."""
    if label_smoothing <= 0:
        return 0.0
    off = label_smoothing / n_classes
    on = 1 - label_smoothing + off
    return float(-(on * np.log(on) + (n_classes - 1) * off * np.log(off)))


def logreg_accuracy(data: Dataset) -> float:
    """Test accuracy of scikit-learn's LogisticRegression on the same standardised split."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=1000).fit(data.X_train.numpy(), data.y_train.numpy())
    return float(clf.score(data.X_test.numpy(), data.y_test.numpy()))


@dataclass
class Units:
    """Per model (K,): regression model units times ``scale`` plus ``shift`` are metric units."""
    scale: np.ndarray
    shift: np.ndarray

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale[:, None] + self.shift[:, None]


def regression_outputs(out: torch.Tensor, loss: str, units: Units,
                       residual_var: Optional[np.ndarray]):
    """Predicted means (K, N) in metric units, and predictive variances: the model's own for
    gaussian_nll, else ``residual_var`` (K,) (a constant-variance model: the validation split's
    mean squared error)."""
    if LOSSES[loss].regression_outputs == 2:
        mean, var = gaussian_mean_var(out.detach())
        var = var[..., 0].cpu().double().numpy() * units.scale[:, None] ** 2
        return units(mean[..., 0].cpu().double().numpy()), var
    pred = units(out.detach().cpu().double().numpy().reshape(out.shape[0], -1))
    return pred, None if residual_var is None else residual_var[:, None]


def output_metrics(losses: List[float], out: torch.Tensor, y: torch.Tensor, kind: str,
                   head: str, loss: str, units: Units,
                   residual_var: Optional[np.ndarray] = None):
    """Metrics of K models from their losses, outputs (K, N, O) and labels or values (K, N)
    (multilabel: (K, N, L)): one dict per model, and the class probabilities (K, N, C) (label
    probabilities (K, N, L) for multilabel; None for regression). Regression: ``units`` maps
    values to metric units; ``residual_var`` (K,), the variance of a model without its own,
    defaults to this split's mean squared error."""
    labels = y.cpu().numpy()
    if kind == REGRESSION:
        target = units(labels.astype(float))
        pred, var = regression_outputs(out, loss, units, residual_var)
        if var is None:
            var = np.mean((pred - target) ** 2, axis=1, keepdims=True)
        rows = metrics.regression_metrics_rows(target, pred, var)
        probs = None
    elif kind == MULTILABEL:
        probs = metrics.label_probabilities(out.cpu(), head=head, loss=loss)
        rows = metrics.multilabel_metrics_rows(labels, probs)
    else:
        probs = metrics.probabilities(out.cpu(), head=head, loss=loss)
        rows = metrics.classification_metrics_rows(labels, probs)
        # Not logged: what the collapse detector compares the predictions with.
        for row, fraction in zip(rows, metrics.majority_fraction(labels, probs.shape[-1])):
            row["data_majority_fraction"] = float(fraction)
    return [{"loss": loss, **row} for loss, row in zip(losses, rows)], probs


def temperature_scaled(val_probs: np.ndarray, val_y: np.ndarray, test_probs: np.ndarray,
                       test_y: np.ndarray) -> List[Dict[str, float]]:
    """Per model: the temperature fitted on the validation split (Guo et al. 2017) and the test
    ECE and NLL after scaling by it, so a claim about confidence can tell miscalibration that
    one temperature fixes from a worse ranking."""
    finite = np.isfinite(val_probs).all((1, 2)) & np.isfinite(test_probs).all((1, 2))
    uniform = 1.0 / val_probs.shape[-1]  # a diverged model's rows: computed, then dropped
    val_probs = np.where(finite[:, None, None], val_probs, uniform)
    test_probs = np.where(finite[:, None, None], test_probs, uniform)
    T = metrics.fit_temperature(val_y, val_probs)
    scaled = metrics.scale_temperature(test_probs, T)
    pred, confidence = scaled.argmax(-1), scaled.max(-1)
    ece = metrics.expected_calibration_error(pred == test_y, confidence)
    nll = metrics.nll(test_y, scaled)
    return [{"temperature": float(t), "ece_calibrated": float(e), "nll_calibrated": float(n)}
            if ok else {} for t, e, n, ok in zip(T, ece, nll, finite)]


def predictions_frame(y: np.ndarray, out: np.ndarray, probs, kind: str,
                 var: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Test split rows: target and prediction (metric units for regression, with the
    predictive variance where the model has one), class or label probabilities."""
    if kind == MULTILABEL:
        frame = pd.DataFrame({f"target_{j}": y[:, j] for j in range(y.shape[1])})
        for j in range(probs.shape[1]):
            frame[f"prob_{j}"] = probs[:, j]
        return frame
    if probs is None:
        frame = pd.DataFrame({"target": y, "prediction": out.reshape(-1)})
        if var is not None:
            frame["variance"] = var
        return frame
    frame = pd.DataFrame({"target": y, "prediction": probs.argmax(1)})
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    return frame


def escape_epoch(history: List[Dict[str, float]], n_classes: int) -> float:
    """The first epoch whose validation balanced accuracy leaves chance (1/C) by a tenth of
    the way to 1; ``len(history) + 1`` when it never does (censored at the budget)."""
    chance = 1.0 / n_classes
    for epoch, record in enumerate(history, 1):
        if record.get("val/balanced_accuracy", -1.0) >= chance + 0.1 * (1 - chance):
            return float(epoch)
    return float(len(history) + 1)
