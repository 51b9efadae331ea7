"""Loss functions by config name, each reduced per sample so class weights apply the same way.

Every loss maps ``(output, target) -> per-sample loss``: outputs ``(K, N, O)`` for a
population of K models (K = 1 for one model) give losses ``(K, N)``; :func:`make_loss` wraps it
into each model's (class-weighted) mean, ``(K,)``. Targets are encoded once per dataset by
:func:`encode_targets`:

- ``value``: regression targets ``(N, 1)``
- ``dense``: 0/1 targets shaped like the output (``(N, 1)`` for a single logit, else one-hot)
- ``index``: class indices ``(N,)``
- ``distribution``: one-hot (optionally label-smoothed) rows ``(N, K)``

The naive forms are written the way the folklore warns against, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

PerSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    """A loss and its traits: everything compat, metrics, the output shape and the target
    encoding need to know about it. Adding a loss is one entry here and one YAML."""
    name: str
    targets: str  # class targets: 'dense', 'index' or 'distribution'
    # On a binary task with a linear or sigmoid head: one output unit instead of two.
    single_logit: bool
    description: str
    # cfg (delta, gamma, alpha, label_smoothing), pos_weight -> the per-sample loss
    build: Callable[[Any, Optional[torch.Tensor]], PerSample]
    accepts: Tuple[str, ...] = ("values", "labels")  # regression values, class labels
    # A value loss fitted to 0/1 targets: its outputs are read as probabilities clipped to
    # [0, 1] (MSE, MAE, Huber on classes: the folklore's target).
    square: bool = False
    one_class_per_sample: bool = False  # index-type: invalid on multilabel samples
    regression_outputs: int = 1  # 2: a mean and a variance
    flat_targets: bool = False  # regression targets (N,) against (N, 1) outputs: the bug


def _focal(out: torch.Tensor, target: torch.Tensor, gamma: float, alpha: Optional[float]):
    if target.shape == out.shape:  # 0/1 targets per output: sigmoid focal loss (Lin et al.
        # 2017; torchvision's formula), for one binary logit or one logit per label
        p = torch.sigmoid(out)
        ce = F.binary_cross_entropy_with_logits(out, target, reduction="none")
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce * (1 - p_t) ** gamma
        if alpha is not None:
            loss = loss * (alpha * target + (1 - alpha) * (1 - target))
        return loss.mean(-1)
    logp_t = F.log_softmax(out, dim=-1).gather(-1, target[..., None])[..., 0]
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    return loss if alpha is None else alpha * loss


def _naive_bce(out, target):
    p = torch.sigmoid(out)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean(-1)


def _naive_ce(out, target):
    return -torch.log(torch.softmax(out, dim=-1)).gather(-1, target[..., None])[..., 0]


def _zero_one(out, target):
    """1 for a wrong prediction, else 0; ``0 * out`` keeps it in the graph, so autograd runs
    and finds what the folklore says: a gradient of exactly zero."""
    if out.shape[-1] == 1:
        wrong = (out[..., 0] > 0).float() != target[..., 0]
    else:
        wrong = out.argmax(-1) != target
    return wrong.float() + 0.0 * out.sum(-1)


def gaussian_mean_var(out: torch.Tensor):
    """A gaussian_nll model's outputs (..., 2) as its mean and variance (softplus keeps the
    variance positive; torch's GaussianNLLLoss clamps it at 1e-6)."""
    return out[..., :1], F.softplus(out[..., 1:])


def _gaussian_nll(out, target):
    mean, var = gaussian_mean_var(out)
    return F.gaussian_nll_loss(mean, target, var, full=True, reduction="none").mean(-1)


def _rows(loss: PerSample) -> PerSample:
    """A loss that takes (rows, classes) and (rows,) applied to (K, N, C) and (K, N)."""
    return lambda o, t: loss(o.flatten(0, -2), t.flatten()).view(t.shape)


LOSSES: Dict[str, LossSpec] = {
    s.name: s
    for s in [
        LossSpec("mse", "dense", True, "mean squared error (nn.MSELoss)",
                 lambda cfg, pw: lambda o, t: F.mse_loss(o, t, reduction="none").mean(-1),
                 square=True),
        LossSpec("mae", "dense", True, "mean absolute error (nn.L1Loss)",
                 lambda cfg, pw: lambda o, t: F.l1_loss(o, t, reduction="none").mean(-1),
                 square=True),
        LossSpec("huber", "dense", True, "Huber loss with loss.delta (nn.HuberLoss)",
                 lambda cfg, pw: lambda o, t: F.huber_loss(o, t, reduction="none",
                                                           delta=cfg.delta).mean(-1),
                 square=True),
        LossSpec("bce", "dense", True, "binary cross-entropy on probabilities (nn.BCELoss)",
                 lambda cfg, pw: lambda o, t: F.binary_cross_entropy(o, t, reduction="none")
                 .mean(-1), accepts=("labels",)),
        LossSpec("bce_with_logits", "dense", True,
                 "binary cross-entropy on logits (nn.BCEWithLogitsLoss)",
                 lambda cfg, pw: lambda o, t: F.binary_cross_entropy_with_logits(
                     o, t, reduction="none", pos_weight=pw).mean(-1), accepts=("labels",)),
        LossSpec("ce", "index", False, "cross-entropy on logits (nn.CrossEntropyLoss)",
                 lambda cfg, pw: _rows(lambda o, t: F.cross_entropy(
                     o, t, reduction="none", label_smoothing=cfg.label_smoothing)),
                 accepts=("labels",), one_class_per_sample=True),
        LossSpec("nll", "index", False, "negative log-likelihood on log-probs (nn.NLLLoss)",
                 lambda cfg, pw: _rows(lambda o, t: F.nll_loss(o, t, reduction="none")),
                 accepts=("labels",), one_class_per_sample=True),
        LossSpec("focal", "index", True,
                 "focal loss on logits (sigmoid for one logit, softmax otherwise)",
                 lambda cfg, pw: lambda o, t: _focal(o, t, cfg.gamma, cfg.alpha),
                 accepts=("labels",)),
        LossSpec("kl_div", "distribution", False,
                 "KL divergence from log-probs to target distribution (nn.KLDivLoss)",
                 lambda cfg, pw: lambda o, t: F.kl_div(o, t, reduction="none").sum(-1),
                 accepts=("labels",), one_class_per_sample=True),
        LossSpec("multi_margin", "index", False, "multi-class hinge (nn.MultiMarginLoss)",
                 lambda cfg, pw: _rows(lambda o, t: F.multi_margin_loss(o, t, reduction="none")),
                 accepts=("labels",), one_class_per_sample=True),
        LossSpec("naive_bce", "dense", True,
                 "hand-written -[y log(sigmoid(z)) + (1-y) log(1-sigmoid(z))]",
                 lambda cfg, pw: _naive_bce, accepts=("labels",)),
        LossSpec("naive_ce", "index", False, "hand-written NLL of log(softmax(z))",
                 lambda cfg, pw: _naive_ce, accepts=("labels",), one_class_per_sample=True),
        LossSpec("ce_onehot", "distribution", False,
                 "categorical cross-entropy with one-hot targets, -sum(y log_softmax(z))",
                 lambda cfg, pw: lambda o, t: -(t * F.log_softmax(o, dim=-1)).sum(-1),
                 accepts=("labels",)),
        LossSpec("zero_one", "index", True,
                 "the 0-1 loss (1 - accuracy) per sample: zero gradient almost everywhere",
                 lambda cfg, pw: _zero_one, accepts=("labels",), one_class_per_sample=True),
        LossSpec("gaussian_nll", "dense", True,
                 "Gaussian negative log-likelihood of a mean and a variance output "
                 "(nn.GaussianNLLLoss; variance = softplus of the second output)",
                 lambda cfg, pw: _gaussian_nll, accepts=("values",), regression_outputs=2),
        # (N,1) - (N,) broadcasts to (N,N) without a word: every prediction is pulled towards
        # every target, so the optimum is the mean target (per model: (K,N,1) - (K,1,N)).
        LossSpec("mse_shape_mismatch", "dense", True,
                 "MSE of (N,1) predictions against (N,) targets: broadcasts to (N,N)",
                 lambda cfg, pw: lambda o, t: ((o - t.unsqueeze(-2)) ** 2).mean(-1),
                 accepts=("values",), flat_targets=True),
    ]
}


def per_sample_loss(cfg, pos_weight: Optional[torch.Tensor]) -> PerSample:
    """The per-sample loss named ``cfg.name`` with its options (delta, gamma, alpha, smoothing)."""
    return LOSSES[cfg.name].build(cfg, pos_weight)


def encode_targets(y: torch.Tensor, *, kind: str, loss: str, out_dim: int, n_classes: int,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Encode labels or values the way loss ``loss`` consumes them for an ``out_dim`` output."""
    if kind == "regression":
        return y if LOSSES[loss].flat_targets else y[..., None]
    if kind == "multilabel":  # already one 0/1 column per label
        return y.float()
    if out_dim == 1:
        return y.float()[..., None]
    targets = LOSSES[loss].targets
    if targets == "index":
        return y
    onehot = F.one_hot(y, n_classes).float()
    if targets == "distribution" and label_smoothing > 0:
        onehot = onehot * (1 - label_smoothing) + label_smoothing / n_classes
    return onehot


def balanced_class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (C * count_c)``, the 'balanced' heuristic of scikit-learn's compute_class_weight,
    per model: labels (K, N) give weights (K, C)."""
    counts = class_counts(y, n_classes)
    return y.shape[-1] / (n_classes * counts)


def class_counts(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each model's class counts (K, C) from its labels (K, N), at least 1."""
    return torch.stack([torch.bincount(row, minlength=n_classes) for row in y]).float().clamp_min(1)


class Loss:
    """Each model's per-sample loss reduced to its (class-weighted) mean,
    ``sum(w_i l_i) / sum(w_i)``: outputs (K, N, O) give losses (K,)."""

    def __init__(self, per_sample: PerSample, class_weights: Optional[torch.Tensor]):
        self.per_sample = per_sample
        self.class_weights = class_weights  # (K, C) or None

    def __call__(self, out: torch.Tensor, target: torch.Tensor,
                 labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        losses = self.per_sample(out, target)
        if self.class_weights is None:
            return losses.mean(-1)
        w = self.class_weights.gather(1, labels)
        return (w * losses).sum(-1) / w.sum(-1)


def make_loss(cfg, *, kind: str, out_dim: int, n_classes: int,
              y_train: torch.Tensor) -> Loss:
    """The configured loss for models trained on labels ``y_train`` (K, N) (multilabel:
    (K, N, labels)), one row per model; class weighting goes through ``pos_weight`` for logits
    BCE, per label on a multilabel task (where no other loss takes class weights)."""
    balanced = kind != "regression" and cfg.class_weight == "balanced"
    if cfg.name == "bce_with_logits" and kind != "regression":
        pos_weight = None
        if cfg.pos_weight is not None:
            pos_weight = torch.full((len(y_train), 1, out_dim), float(cfg.pos_weight))
        elif balanced:
            pos_weight = _balanced_pos_weight(y_train, kind, n_classes, out_dim)
        return Loss(per_sample_loss(cfg, pos_weight), None)
    weights = (balanced_class_weights(y_train, n_classes)
               if balanced and kind != "multilabel" else None)
    return Loss(per_sample_loss(cfg, None), weights)


def _balanced_pos_weight(y_train: torch.Tensor, kind: str, n_classes: int,
                         out_dim: int) -> torch.Tensor:
    """Negatives over positives of each output, (K, 1, out_dim): per label (multilabel), else
    per class (a single logit: class 1's)."""
    if kind == "multilabel":
        positives = y_train.sum(1).float().clamp_min(1)  # (K, labels)
        return ((y_train.shape[1] - positives) / positives)[:, None, :]
    counts = class_counts(y_train, n_classes)
    neg_over_pos = (y_train.shape[-1] - counts) / counts
    return (neg_over_pos[:, 1:] if out_dim == 1 else neg_over_pos)[:, None, :]
