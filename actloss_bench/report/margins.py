"""One margin per metric family: the smallest effect that counts as the claimed one.

A rule overrides its family's margin only where its claim states a number (``margin`` with
``margin_why``); every page quotes this table.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from actloss_bench.engine.diagnoses import DIAGNOSES

MARGIN_FAMILIES: Dict[str, Tuple[float, Tuple[str, ...]]] = {
    "score (accuracy, balanced accuracy, F1, AUC, R²)": (0.02, (
        "accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "pr_auc", "subset_accuracy",
        "minority_recall", "r2", "logreg_accuracy")),
    "calibration (ECE, mean confidence)": (0.02, ("ece", "ece_calibrated", "ece_positive",
                                                   "mean_confidence")),
    "loss (NLL, the training loss)": (0.05, ("nll", "nll_calibrated", "loss", "brier")),
    "regression error (RMSE, MAE in target sd)": (0.05, ("rmse", "mae")),
    "interval coverage": (0.03, ("coverage_90",)),
    "rate of models (collapsed, diverged, ...)": (0.2, tuple(DIAGNOSES)),
    "fraction of units (dead, saturated)": (0.1, ("fraction",)),
    "log10 of a ratio": (1.0, ("log10",)),
    "epochs": (2.0, ("escape_epoch",)),
    "gradient norm of a layer (none below it)": (1e-4, tuple(f"layer_{i}" for i in range(64))),
    "relative jitter of a converged curve": (0.002, ("jitter",)),
    "area under a validation curve (score per epoch)": (0.02, ("curve_mean",)),
}
RATES = frozenset(DIAGNOSES)
# Metrics with a chance level: both arms at or within a margin of it leave nothing to compare.
CHANCE_METRICS = ("test/accuracy", "test/balanced_accuracy", "test/roc_auc")


def margin_family(metric: str, transform: Optional[str] = None) -> str:
    if transform:
        return next(f for f, (_, names) in MARGIN_FAMILIES.items() if transform in names)
    name = metric.split(":")[0] if ":" in metric else metric.split("/")[-1]
    for family, (_, names) in MARGIN_FAMILIES.items():
        if name in names:
            return family
    raise KeyError(f"metric {metric!r} has no margin family; add it to MARGIN_FAMILIES")


def rule_margin(rule: Mapping[str, Any]) -> Tuple[float, str]:
    """The rule's margin and where it comes from (its family, or the claim's own number)."""
    if "margin" in rule:
        if not rule.get("margin_why"):
            raise ValueError(f"rule {rule.get('name')!r} overrides its margin without "
                             f"margin_why: only a number the claim itself states may")
        return float(rule["margin"]), f"the claim's own: {rule['margin_why']}"
    family = margin_family(rule["metric"], rule.get("transform"))
    return MARGIN_FAMILIES[family][0], family
