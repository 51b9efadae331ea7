"""Loss functions by config name, each reduced per sample so class weights apply the same way.

Every loss maps ``(output, target) -> per-sample loss (N,)``; :func:`make_loss` wraps it into a
(weighted) mean. Targets are encoded once per dataset by :func:`encode_targets`:

- ``value``: regression targets ``(N, 1)``
- ``dense``: 0/1 targets shaped like the output (``(N, 1)`` for a single logit, else one-hot)
- ``index``: class indices ``(N,)``
- ``distribution``: one-hot (optionally label-smoothed) rows ``(N, K)``

The naive forms are written the way the folklore warns against, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

PerSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    name: str
    targets: str  # 'dense', 'index' or 'distribution' for class targets
    # On a binary task with a linear or sigmoid head: one output unit instead of two.
    single_logit: bool
    description: str


LOSSES: Dict[str, LossSpec] = {
    s.name: s
    for s in [
        LossSpec("mse", "dense", True, "mean squared error (nn.MSELoss)"),
        LossSpec("mae", "dense", True, "mean absolute error (nn.L1Loss)"),
        LossSpec("huber", "dense", True, "Huber loss with loss.delta (nn.HuberLoss)"),
        LossSpec("bce", "dense", True, "binary cross-entropy on probabilities (nn.BCELoss)"),
        LossSpec("bce_with_logits", "dense", True,
                 "binary cross-entropy on logits (nn.BCEWithLogitsLoss)"),
        LossSpec("ce", "index", False, "cross-entropy on logits (nn.CrossEntropyLoss)"),
        LossSpec("nll", "index", False, "negative log-likelihood on log-probs (nn.NLLLoss)"),
        LossSpec("focal", "index", True,
                 "focal loss on logits (sigmoid for one logit, softmax otherwise)"),
        LossSpec("kl_div", "distribution", False,
                 "KL divergence from log-probs to target distribution (nn.KLDivLoss)"),
        LossSpec("multi_margin", "index", False, "multi-class hinge (nn.MultiMarginLoss)"),
        LossSpec("naive_bce", "dense", True,
                 "hand-written -[y log(sigmoid(z)) + (1-y) log(1-sigmoid(z))]"),
        LossSpec("naive_ce", "index", False, "hand-written NLL of log(softmax(z))"),
        LossSpec("mse_shape_mismatch", "dense", True,
                 "MSE of (N,1) predictions against (N,) targets: broadcasts to (N,N)"),
    ]
}


def _focal(out: torch.Tensor, target: torch.Tensor, gamma: float, alpha: Optional[float]):
    if out.shape[-1] == 1:  # sigmoid focal loss (Lin et al. 2017; torchvision's formula)
        p = torch.sigmoid(out)
        ce = F.binary_cross_entropy_with_logits(out, target, reduction="none")
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce * (1 - p_t) ** gamma
        if alpha is not None:
            loss = loss * (alpha * target + (1 - alpha) * (1 - target))
        return loss.mean(-1)
    logp_t = F.log_softmax(out, dim=-1).gather(1, target[:, None])[:, 0]
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    return loss if alpha is None else alpha * loss


def _naive_bce(out, target):
    p = torch.sigmoid(out)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean(-1)


def _naive_ce(out, target):
    return -torch.log(torch.softmax(out, dim=-1)).gather(1, target[:, None])[:, 0]


def per_sample_loss(cfg, pos_weight: Optional[torch.Tensor]) -> PerSample:
    """The per-sample loss named ``cfg.name`` with its options (delta, gamma, alpha, smoothing)."""
    name = cfg.name
    if name == "mse":
        return lambda o, t: F.mse_loss(o, t, reduction="none").mean(-1)
    if name == "mae":
        return lambda o, t: F.l1_loss(o, t, reduction="none").mean(-1)
    if name == "huber":
        return lambda o, t: F.huber_loss(o, t, reduction="none", delta=cfg.delta).mean(-1)
    if name == "bce":
        return lambda o, t: F.binary_cross_entropy(o, t, reduction="none").mean(-1)
    if name == "bce_with_logits":
        return lambda o, t: F.binary_cross_entropy_with_logits(
            o, t, reduction="none", pos_weight=pos_weight).mean(-1)
    if name == "ce":
        return lambda o, t: F.cross_entropy(
            o, t, reduction="none", label_smoothing=cfg.label_smoothing)
    if name == "nll":
        return lambda o, t: F.nll_loss(o, t, reduction="none")
    if name == "focal":
        return lambda o, t: _focal(o, t, cfg.gamma, cfg.alpha)
    if name == "kl_div":
        return lambda o, t: F.kl_div(o, t, reduction="none").sum(-1)
    if name == "multi_margin":
        return lambda o, t: F.multi_margin_loss(o, t, reduction="none")
    if name == "naive_bce":
        return _naive_bce
    if name == "naive_ce":
        return _naive_ce
    if name == "mse_shape_mismatch":
        # (N,1) - (N,) broadcasts to (N,N) without a word: every prediction is pulled towards
        # every target, so the optimum is the mean target.
        return lambda o, t: ((o - t.reshape(-1)) ** 2).mean(-1)
    raise KeyError(name)


def encode_targets(y: torch.Tensor, *, kind: str, loss: str, out_dim: int, n_classes: int,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Encode labels or values the way loss ``loss`` consumes them for an ``out_dim`` output."""
    if kind == "regression":
        return y.reshape(-1) if loss == "mse_shape_mismatch" else y.reshape(-1, 1)
    if out_dim == 1:
        return y.float().reshape(-1, 1)
    targets = LOSSES[loss].targets
    if targets == "index":
        return y
    onehot = F.one_hot(y, n_classes).float()
    if targets == "distribution" and label_smoothing > 0:
        onehot = onehot * (1 - label_smoothing) + label_smoothing / n_classes
    return onehot


def balanced_class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (K * count_c)``, the 'balanced' heuristic of scikit-learn's compute_class_weight."""
    counts = torch.bincount(y, minlength=n_classes).float().clamp_min(1)
    return len(y) / (n_classes * counts)


class Loss:
    """A per-sample loss reduced to a (class-weighted) mean: ``sum(w_i l_i) / sum(w_i)``."""

    def __init__(self, per_sample: PerSample, sample_weight_of_class: Optional[torch.Tensor]):
        self.per_sample = per_sample
        self.class_weights = sample_weight_of_class

    def __call__(self, out: torch.Tensor, target: torch.Tensor,
                 labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        losses = self.per_sample(out, target)
        if self.class_weights is None or labels is None:
            return losses.mean()
        w = self.class_weights[labels]
        return (w * losses).sum() / w.sum()


def make_loss(cfg, *, kind: str, out_dim: int, n_classes: int,
              y_train: torch.Tensor) -> Loss:
    """Build the configured loss; class weighting goes through ``pos_weight`` for logits BCE."""
    weights = None
    pos_weight = None
    if kind != "regression" and cfg.class_weight == "balanced":
        weights = balanced_class_weights(y_train, n_classes)
    if cfg.name == "bce_with_logits" and kind != "regression":
        if cfg.pos_weight is not None:
            pos_weight = torch.full((out_dim,), float(cfg.pos_weight))
        elif weights is not None:
            counts = torch.bincount(y_train, minlength=n_classes).float().clamp_min(1)
            neg_over_pos = (len(y_train) - counts) / counts
            pos_weight = neg_over_pos[1:] if out_dim == 1 else neg_over_pos
        weights = None  # weighting lives in pos_weight for this loss
    return Loss(per_sample_loss(cfg, pos_weight), weights)


# --- Closed-form gradients ---------------------------------------------------------------------
# On a tiny model, autograd through head + loss is a fifth of a training step (measured 91 of
# ~440 us), almost all of it graph bookkeeping. For a linear head and the common unweighted
# losses the gradient of the mean loss is a few elementwise ops. Each form below repeats
# autograd's own backward op by op (mean's 1/n, then the loss's backward kernel), so the
# gradients are equal bit for bit, not merely close (tests/test_losses.py checks every form
# against autograd, for one model and for stacked seeds).
OutputGradient = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@lru_cache(maxsize=64)
def _mean_scale(n: int, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """What autograd sends back to each output of ``per_sample(out).mean()`` over ``n`` rows:
    ``1 / n`` as mean's backward rounds it, then ``/ k`` for a per-sample mean over k outputs."""
    scale = torch.ones((), dtype=dtype, device=device) / n
    return scale / k if k != 1 else scale


@lru_cache(maxsize=64)
def _nll_seed(n: int, dtype: torch.dtype) -> float:
    """``-1 / n`` rounded as ``_mean_scale`` rounds it, as a number (no device read per step)."""
    return -float(_mean_scale(n, 1, dtype, torch.device("cpu")))


def _bce_with_logits_grad(out, target, n):
    scale = _mean_scale(n, out.shape[-1], out.dtype, out.device)
    return (torch.sigmoid(out) - target).mul_(scale)


def _mse_grad(out, target, n):
    scale = _mean_scale(n, out.shape[-1], out.dtype, out.device)
    return (out - target).mul_(2).mul_(scale)


def _ce_grad(out, target, n):
    # nll_loss's backward puts -1/n at each row's class; log_softmax's backward kernel does the
    # rest (re-deriving softmax - onehot rounds differently, by ~5e-10).
    seed = torch.zeros_like(out).scatter_(1, target[:, None], _nll_seed(n, out.dtype))
    log_probs = torch.log_softmax(out, 1)
    return torch._log_softmax_backward_data(seed, log_probs, 1, out.dtype)


CLOSED_FORM_GRADIENTS: Dict[str, OutputGradient] = {
    "bce_with_logits": _bce_with_logits_grad,
    "mse": _mse_grad,
    "ce": _ce_grad,
}


def closed_form_gradient(cfg, head: str) -> Optional[OutputGradient]:
    """``grad(out, target, n)``, the gradient of the unweighted mean loss over ``n`` rows with
    respect to the weight layers' output, for loss ``cfg`` behind head ``head``; None where
    autograd must differentiate (any head but linear, class weights, ``pos_weight``, label
    smoothing, or a loss without a closed form here)."""
    if head != "linear" or cfg.class_weight != "none" or cfg.pos_weight is not None:
        return None
    if cfg.name == "ce" and cfg.label_smoothing > 0:
        return None
    return CLOSED_FORM_GRADIENTS.get(cfg.name)
