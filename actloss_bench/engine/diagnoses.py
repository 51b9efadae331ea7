"""Detectors that turn a run's final metrics into diagnoses (the ``diagnosis`` tag).

Every threshold lives in :data:`THRESHOLDS`; README and the report quote them from here.
A detector reads the final validation metrics of one run (the names logged to MLflow, without
the ``val/`` prefix for split metrics) and the run's status.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping


@dataclass(frozen=True)
class Thresholds:
    # collapsed (classification): the share of inputs predicted as anything but the most
    # predicted class is below this fraction of the data's own non-majority share.
    collapse_minority_share: float = 0.1
    # collapsed (regression): std of predictions below this fraction of the targets' std.
    collapse_pred_std_ratio: float = 0.1
    # dead_units: at least this fraction of all hidden units output exactly 0 on every input.
    dead_fraction: float = 0.5
    # vanishing_gradients: first-layer weight-gradient norm below this fraction of the last's.
    vanishing_ratio: float = 0.01
    # saturated: at least this fraction of sigmoid/tanh outputs sit in their flat tails.
    saturation_fraction: float = 0.5
    # over/underconfident: ECE at least this, and mean confidence above/below accuracy.
    ece: float = 0.1


THRESHOLDS = Thresholds()
DIAGNOSES = ("collapsed", "dead_units", "vanishing_gradients", "saturated", "diverged",
             "overconfident", "underconfident")


def _finite(m: Mapping[str, float], key: str) -> float | None:
    v = m.get(key)
    return v if v is not None and math.isfinite(v) else None


def diagnose(metrics: Mapping[str, float], *, status: str,
             t: Thresholds = THRESHOLDS) -> List[str]:
    """Names of the diagnoses that apply, in the order of :data:`DIAGNOSES`."""
    found: List[str] = []
    pred_major = _finite(metrics, "pred_majority_fraction")
    data_major = _finite(metrics, "data_majority_fraction")
    std_ratio = _finite(metrics, "pred_std_ratio")
    if pred_major is not None and data_major is not None:
        if (1 - pred_major) < t.collapse_minority_share * (1 - data_major):
            found.append("collapsed")
    elif std_ratio is not None and std_ratio < t.collapse_pred_std_ratio:
        found.append("collapsed")
    dead = _finite(metrics, "dead/fraction")
    if dead is not None and dead >= t.dead_fraction:
        found.append("dead_units")
    ratio = _finite(metrics, "grad_norm/ratio_first_last")
    if ratio is not None and ratio < t.vanishing_ratio:
        found.append("vanishing_gradients")
    sat = _finite(metrics, "saturation/fraction")
    if sat is not None and sat >= t.saturation_fraction:
        found.append("saturated")
    if status == "diverged":
        found.append("diverged")
    ece, conf, acc = (_finite(metrics, k) for k in ("ece", "mean_confidence", "accuracy"))
    if ece is not None and conf is not None and acc is not None and ece >= t.ece:
        found.append("overconfident" if conf > acc else "underconfident")
    return found


def thresholds_table() -> Dict[str, float]:
    return asdict(THRESHOLDS)
