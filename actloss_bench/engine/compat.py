"""Task x head x loss compatibility: every cell is canonical, a mistake, or invalid.

- ``canonical``: the textbook pairing.
- ``mistake``: runs, and is a documented bad choice (the folklore's target).
- ``invalid``: cannot run (the loss rejects the head's range or the task's targets).

``actloss-matrix`` (cli/matrix.py) prints the whole table.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

from actloss_bench.engine.activations import HEADS, VALUE_HEADS
from actloss_bench.engine.losses import LOSSES
from actloss_bench.engine.tasks import KINDS, TARGET_SCALINGS

CANONICAL, MISTAKE, INVALID = "canonical", "mistake", "invalid"


class Combo(NamedTuple):
    verdict: str
    reason: str


# Read from the losses' own traits (engine/losses.py).
_SQUARE_LOSSES = tuple(name for name, spec in LOSSES.items() if spec.square)

# Classification rules: loss -> head -> (verdict, reason). Binary and multiclass share them
# except where _BINARY_ONLY_CANONICAL says otherwise.
_CLASSIFICATION: Dict[str, Dict[str, Tuple[str, str]]] = {
    **{
        loss: {
            "linear": (MISTAKE, f"{loss} on class labels (folklore: collapses to the class mean)"),
            "sigmoid": (MISTAKE, f"{loss} on sigmoid probabilities"),
            "softmax": (MISTAKE, f"{loss} on softmax probabilities"),
            "log_softmax": (MISTAKE, f"{loss} between log-probabilities and 0/1 targets"),
        }
        for loss in _SQUARE_LOSSES
    },
    "bce": {
        "linear": (INVALID, "BCELoss needs probabilities in [0, 1]; a linear head emits logits"),
        "sigmoid": (MISTAKE, "sigmoid then BCELoss: less stable than bce_with_logits "
                             "(torch clamps the log at -100)"),
        "softmax": (MISTAKE, "BCELoss on softmax probabilities (one-vs-rest on a distribution)"),
        "log_softmax": (INVALID, "BCELoss needs probabilities in [0, 1]; log_softmax is <= 0"),
    },
    "bce_with_logits": {
        "linear": (CANONICAL, "logits into BCEWithLogitsLoss"),
        "sigmoid": (MISTAKE, "sigmoid applied twice (head and loss)"),
        "softmax": (MISTAKE, "softmax probabilities treated as logits"),
        "log_softmax": (MISTAKE, "log-probabilities treated as logits"),
    },
    "naive_bce": {
        "linear": (MISTAKE, "hand-written log(sigmoid(z)) overflows to -inf for large |z|"),
        "sigmoid": (MISTAKE, "sigmoid applied twice, then a hand-written log"),
        "softmax": (MISTAKE, "softmax probabilities treated as logits in a hand-written BCE"),
        "log_softmax": (MISTAKE, "log-probabilities treated as logits in a hand-written BCE"),
    },
    "ce": {
        "linear": (CANONICAL, "logits into CrossEntropyLoss"),
        "sigmoid": (MISTAKE, "sigmoid scores treated as logits by CrossEntropyLoss"),
        "softmax": (MISTAKE, "softmax before CrossEntropyLoss (softmax applied twice)"),
        "log_softmax": (CANONICAL, "log_softmax is idempotent inside CrossEntropyLoss"),
    },
    "ce_onehot": {
        "linear": (CANONICAL, "logits into categorical cross-entropy with one-hot targets"),
        "sigmoid": (MISTAKE, "sigmoid scores treated as logits by cross-entropy"),
        "softmax": (MISTAKE, "softmax before cross-entropy (softmax applied twice)"),
        "log_softmax": (CANONICAL, "log_softmax is idempotent inside cross-entropy"),
    },
    "zero_one": {
        head: (MISTAKE, "the 0-1 loss (accuracy as a loss) is flat almost everywhere: its "
                        "gradient is zero, so gradient descent cannot move")
        for head in HEADS
    },
    "naive_ce": {
        "linear": (MISTAKE, "hand-written log(softmax(z)) underflows to -inf for large margins"),
        "sigmoid": (MISTAKE, "sigmoid scores into a hand-written log(softmax)"),
        "softmax": (MISTAKE, "softmax applied twice, then a hand-written log"),
        "log_softmax": (MISTAKE, "log(softmax(log_softmax)) by hand: redundant and unstable"),
    },
    "nll": {
        "linear": (MISTAKE, "NLLLoss on raw scores is unbounded below"),
        "sigmoid": (MISTAKE, "NLLLoss on sigmoid scores (not log-probabilities)"),
        "softmax": (MISTAKE, "NLLLoss on probabilities instead of log-probabilities"),
        "log_softmax": (CANONICAL, "log-probabilities into NLLLoss"),
    },
    "focal": {
        "linear": (CANONICAL, "logits into focal loss"),
        "sigmoid": (MISTAKE, "focal loss expects logits; sigmoid applied twice"),
        "softmax": (MISTAKE, "focal loss expects logits; softmax applied twice"),
        "log_softmax": (MISTAKE, "focal loss expects logits, got log-probabilities"),
    },
    "kl_div": {
        "linear": (MISTAKE, "KLDivLoss expects log-probabilities; raw scores are unbounded"),
        "sigmoid": (MISTAKE, "KLDivLoss on sigmoid scores (not log-probabilities)"),
        "softmax": (MISTAKE, "KLDivLoss on probabilities instead of log-probabilities"),
        "log_softmax": (CANONICAL, "log-probabilities into KLDivLoss"),
    },
    "multi_margin": {
        "linear": (CANONICAL, "raw scores into the multi-class hinge"),
        "sigmoid": (MISTAKE, "hinge on squashed scores (margin 1 is unreachable in (0,1))"),
        "softmax": (MISTAKE, "hinge on softmax probabilities"),
        "log_softmax": (MISTAKE, "hinge on log-probabilities"),
    },
    "mse_shape_mismatch": {
        head: (INVALID, "mse_shape_mismatch reproduces a regression bug; use a regression task")
        for head in HEADS
    },
}

_BINARY_ONLY_CANONICAL = {
    ("bce_with_logits", "linear"): "one-vs-rest sigmoids on a single-label multiclass task",
}

_REGRESSION_HEADS = {
    "linear": (CANONICAL, "raw values for a regression loss"),
    "sigmoid": (MISTAKE, "sigmoid bounds outputs to (0, 1); standardised targets are not"),
    "softmax": (MISTAKE, "softmax over one output is the constant 1"),
    "log_softmax": (MISTAKE, "log_softmax over one output is the constant 0"),
    "tanh": (MISTAKE, "tanh bounds outputs to (-1, 1); standardised targets are not"),
    "softplus": (MISTAKE, "softplus outputs are positive; standardised targets are not"),
    "relu": (MISTAKE, "relu outputs are non-negative; standardised targets are not"),
}
# A bounded or positive head fits targets scaled into its range (task.target_scaling).
_HEAD_FITS_SCALING = {
    ("sigmoid", "unit"): "sigmoid's (0, 1) matches targets scaled to [0, 1] by their range",
    ("tanh", "symmetric"): "tanh's (-1, 1) matches targets scaled to [-1, 1] by their range",
    ("softplus", "unit"): "a positive head for targets scaled to [0, 1]",
    ("relu", "unit"): "a non-negative head for targets scaled to [0, 1] (its unit dies below 0)",
}

_MULTILABEL = {
    ("bce_with_logits", "linear"): (CANONICAL, "one logit per label into BCEWithLogitsLoss: "
                                               "independent sigmoids"),
    ("focal", "linear"): (CANONICAL, "one logit per label into sigmoid focal loss"),
    ("bce", "softmax"): (MISTAKE, "softmax makes independent labels compete: their "
                                  "probabilities must sum to 1"),
    ("ce_onehot", "linear"): (MISTAKE, "softmax cross-entropy over independent labels: they "
                                       "compete for one unit of probability"),
    ("ce_onehot", "log_softmax"): (MISTAKE, "softmax cross-entropy over independent labels: "
                                            "they compete for one unit of probability"),
}


def _regression(head: str, loss: str, scaling: str) -> Combo:
    spec = LOSSES[loss]
    if "values" not in spec.accepts:
        return Combo(INVALID, f"{loss} needs class labels; regression targets are continuous")
    if spec.regression_outputs == 2:
        if head == "linear":
            return Combo(CANONICAL, "a mean and a variance output into Gaussian NLL")
        return Combo(MISTAKE, f"a {head} head squashes the mean and the variance together")
    if spec.flat_targets and head == "linear":
        return Combo(MISTAKE, "(N,1) predictions against (N,) targets broadcast to (N,N)")
    if (head, scaling) in _HEAD_FITS_SCALING and not spec.flat_targets:
        return Combo(CANONICAL, _HEAD_FITS_SCALING[(head, scaling)])
    if head in ("softplus", "relu") and scaling == "none":
        return Combo(MISTAKE, f"{head} outputs are positive; fits raw targets only if they are "
                              f"positive (the linear head makes no such bet)")
    return Combo(*_REGRESSION_HEADS[head])


def _classification(kind: str, head: str, loss: str) -> Combo:
    spec = LOSSES[loss]
    if "labels" not in spec.accepts and loss not in _CLASSIFICATION:
        return Combo(INVALID, f"{loss} needs continuous targets, not class labels")
    if kind == "multilabel":
        if spec.one_class_per_sample:
            return Combo(INVALID, f"{loss} needs one class per sample; a multilabel sample has "
                                  f"several")
        if (loss, head) in _MULTILABEL:
            return Combo(*_MULTILABEL[(loss, head)])
    if head in VALUE_HEADS:
        if loss == "bce":
            return Combo(INVALID, f"BCELoss needs probabilities in [0, 1]; a {head} head is "
                                  f"not bounded to it")
        return Combo(MISTAKE, f"{head} outputs are neither logits nor probabilities")
    verdict, reason = _CLASSIFICATION[loss][head]
    if kind != "binary" and (loss, head) in _BINARY_ONLY_CANONICAL:
        return Combo(MISTAKE, _BINARY_ONLY_CANONICAL[(loss, head)])
    return Combo(verdict, reason)


def classify(kind: str, head: str, loss: str, scaling: str = "standard") -> Combo:
    """Classify the (task kind, head, loss) cell; ``scaling``: task.target_scaling, which
    decides whether a bounded or positive regression head fits its targets.

    >>> classify("multiclass", "softmax", "ce").verdict
    'mistake'
    """
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is not one of {', '.join(KINDS)}")
    if head not in HEADS or loss not in LOSSES or scaling not in TARGET_SCALINGS:
        raise ValueError(f"unknown head {head!r}, loss {loss!r} or scaling {scaling!r}")
    if kind == "regression":
        return _regression(head, loss, scaling)
    return _classification(kind, head, loss)


def output_dim(kind: str, head: str, loss: str, n_classes: int) -> int:
    """Output units: 1 for regression (2 for a mean and a variance) and for single-logit binary
    losses, else n_classes (one per label for multilabel)."""
    if kind == "regression":
        return LOSSES[loss].regression_outputs
    if kind == "binary" and LOSSES[loss].single_logit and head in ("linear", "sigmoid"):
        return 1
    return n_classes


def matrix_rows(scaling: str = "standard"):
    for kind in KINDS:
        for loss in LOSSES:
            for head in HEADS:
                combo = classify(kind, head, loss, scaling)
                yield kind, head, loss, combo.verdict, combo.reason
