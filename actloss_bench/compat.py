"""Task x head x loss compatibility: every cell is canonical, a mistake, or invalid.

- ``canonical``: the textbook pairing.
- ``mistake``: runs, and is a documented bad choice (the folklore's target).
- ``invalid``: cannot run (the loss rejects the head's range or the task's targets).

``actloss-matrix`` prints the whole table.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, NamedTuple, Tuple

from actloss_bench.activations import HEADS
from actloss_bench.losses import LOSSES

CANONICAL, MISTAKE, INVALID = "canonical", "mistake", "invalid"
KINDS = ("regression", "binary", "multiclass")


class Combo(NamedTuple):
    verdict: str
    reason: str


_REGRESSION_LOSSES = ("mse", "mae", "huber")

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
        for loss in _REGRESSION_LOSSES
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
}


def classify(kind: str, head: str, loss: str) -> Combo:
    """Classify the (task kind, head, loss) cell.

    >>> classify("multiclass", "softmax", "ce").verdict
    'mistake'
    """
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is not one of {', '.join(KINDS)}")
    if head not in HEADS or loss not in LOSSES:
        raise ValueError(f"unknown head {head!r} or loss {loss!r}")
    if kind == "regression":
        if loss in _REGRESSION_LOSSES:
            return Combo(*_REGRESSION_HEADS[head])
        if loss == "mse_shape_mismatch":
            if head == "linear":
                return Combo(MISTAKE, "(N,1) predictions against (N,) targets broadcast to (N,N)")
            return Combo(*_REGRESSION_HEADS[head])
        return Combo(INVALID, f"{loss} needs class labels; regression targets are continuous")
    verdict, reason = _CLASSIFICATION[loss][head]
    if kind == "multiclass" and (loss, head) in _BINARY_ONLY_CANONICAL:
        return Combo(MISTAKE, _BINARY_ONLY_CANONICAL[(loss, head)])
    return Combo(verdict, reason)


def output_dim(kind: str, head: str, loss: str, n_classes: int) -> int:
    """Output units: 1 for regression and for single-logit binary losses, else n_classes."""
    if kind == "regression":
        return 1
    if kind == "binary" and LOSSES[loss].single_logit and head in ("linear", "sigmoid"):
        return 1
    return n_classes


def matrix_rows():
    for kind in KINDS:
        for loss in LOSSES:
            for head in HEADS:
                combo = classify(kind, head, loss)
                yield kind, head, loss, combo.verdict, combo.reason


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="actloss-matrix",
        description="Print the task x head x loss compatibility matrix.")
    parser.add_argument("--kind", choices=KINDS, help="only this task kind")
    parser.add_argument("--verdict", choices=(CANONICAL, MISTAKE, INVALID), help="only these")
    args = parser.parse_args(argv)
    try:
        print(f"{'kind':<11} {'head':<12} {'loss':<19} {'verdict':<10} reason")
        for kind, head, loss, verdict, reason in matrix_rows():
            if (args.kind or kind) == kind and (args.verdict or verdict) == verdict:
                print(f"{kind:<11} {head:<12} {loss:<19} {verdict:<10} {reason}")
        sys.stdout.flush()
    except BrokenPipeError:  # `actloss-matrix | head` ends quietly (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
