"""The training loop: tensors in memory, shuffled index batches, one host sync per epoch.

A tiny MLP's step is dominated by Python overhead, so the loop avoids a DataLoader and any
per-step ``.item()``: step losses and gradient norms stay on the device and are read once per
epoch, when the validation metrics are computed and handed to ``on_epoch`` (the logger).
Gradients come from a hand-written backward through the weight layers (``backprop.py``), started
from a closed-form output gradient where the head and loss have one (``losses.py``), and go
straight to a fused optimiser kernel (``optim.py``): no ``.grad``, no ``zero_grad``.
A non-finite loss is a result, not a crash: the run stops at the end of that epoch and reports
``status='diverged'`` with the first bad step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from actloss_bench import diagnostics, metrics
from actloss_bench.allocator import keep_freed_memory
from actloss_bench.backprop import Backprop, output_grad
from actloss_bench.compat import INVALID, Combo, classify, output_dim
from actloss_bench.diagnoses import diagnose
from actloss_bench.losses import Loss, closed_form_gradient, encode_targets, make_loss
from actloss_bench.model import MLP, build_model
from actloss_bench.optim import build_optimizer, clip_grad_norm_
from actloss_bench.tasks import REGRESSION, Dataset, make_dataset

OK, DIVERGED = "ok", "diverged"


class InvalidCombination(ValueError):
    """The task x head x loss cell cannot run; the message says why."""


@dataclass
class TrainResult:
    status: str
    combo: Combo
    history: List[Dict[str, float]] = field(default_factory=list)  # one dict per epoch
    test: Dict[str, float] = field(default_factory=dict)  # test/* metrics
    diagnoses: List[str] = field(default_factory=list)
    diverged_at_step: Optional[int] = None
    predictions: Optional[pd.DataFrame] = None
    steps: int = 0

    @property
    def final(self) -> Dict[str, float]:
        return self.history[-1] if self.history else {}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class _Split:
    X: torch.Tensor
    y: torch.Tensor  # labels or values
    target: torch.Tensor  # encoded for the loss


@dataclass(frozen=True)
class Readout:
    """How a model's outputs are read: the task kind, the head and the loss (plain strings:
    evaluation runs every epoch, and each OmegaConf attribute lookup costs ~40 us)."""
    kind: str
    head: str
    loss: str

    @classmethod
    def of(cls, cfg, kind: str) -> "Readout":
        return cls(kind, cfg.head.name, cfg.loss.name)


def _evaluate(model: MLP, split: _Split, loss_fn: Loss, readout: Readout):
    """One model's metrics on one split (names without the split prefix): (metrics, hidden
    outputs, outputs, probabilities)."""
    with torch.inference_mode():
        out, hidden = model.forward_with_hidden(split.X)
        loss = loss_fn(out, split.target, split.y)
    rows, probs = output_metrics([float(loss)], out[None], split.y[None], readout)
    return rows[0], hidden, out, None if probs is None else probs[0]


def output_metrics(losses: List[float], out: torch.Tensor, y: torch.Tensor, readout: Readout):
    """Metrics of S models from their losses, outputs (S, N, O) and labels or values (S, N):
    one dict per model, and the class probabilities (S, N, K) (None for regression)."""
    labels = y.cpu().numpy()
    if readout.kind == REGRESSION:
        rows = metrics.regression_metrics_rows(labels, out.cpu().numpy().reshape(len(labels), -1))
        probs = None
    else:
        probs = metrics.probabilities(out.cpu(), head=readout.head, loss=readout.loss)
        rows = metrics.classification_metrics_rows(labels, probs)
        majority = metrics.majority_fraction(labels, probs.shape[-1]).tolist()
        for row, fraction in zip(rows, majority):
            row["data_majority_fraction"] = fraction
    return [{"loss": loss, **row} for loss, row in zip(losses, rows)], probs


def epoch_record(train_loss: float, val: Dict[str, float],
                 network: Dict[str, float]) -> Dict[str, float]:
    """One epoch's logged metrics: train loss, val/*, and the network's dead units, saturation
    and gradient norms (``diagnostics.network_metrics``)."""
    record = {"train/loss": train_loss}
    record.update({f"val/{k}": v for k, v in val.items() if k != "data_majority_fraction"})
    record.update(network)
    return record


def _predictions(split: _Split, out: torch.Tensor, probs) -> pd.DataFrame:
    y = split.y.cpu().numpy()
    if probs is None:
        return pd.DataFrame({"target": y, "prediction": out.cpu().numpy().reshape(-1)})
    frame = pd.DataFrame({"target": y, "prediction": probs.argmax(1)})
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    return frame


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


def train(cfg, *, on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None,
          data: Optional[Dataset] = None) -> TrainResult:
    """Train one model as ``cfg`` says; ``on_epoch(epoch, metrics)`` receives each epoch's metrics.

    Raises InvalidCombination before any work when the task x head x loss cell cannot run.
    """
    keep_freed_memory()
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    data = data if data is not None else make_dataset(cfg.task, cfg.seed)
    combo = classify(data.kind, cfg.head.name, cfg.loss.name)
    if combo.verdict == INVALID:
        raise InvalidCombination(combo.reason)

    device = pick_device(cfg.trainer.device)
    torch.manual_seed(cfg.seed)
    out_dim = output_dim(data.kind, cfg.head.name, cfg.loss.name, data.n_classes)
    model = build_model(cfg, in_dim=data.n_features, out_dim=out_dim).to(device)
    loss_fn = make_loss(cfg.loss, kind=data.kind, out_dim=out_dim, n_classes=data.n_classes,
                        y_train=data.y_train)
    if loss_fn.class_weights is not None:
        loss_fn.class_weights = loss_fn.class_weights.to(device)

    def split(X, y):
        target = encode_targets(y, kind=data.kind, loss=cfg.loss.name, out_dim=out_dim,
                                n_classes=data.n_classes,
                                label_smoothing=cfg.loss.label_smoothing)
        return _Split(X.to(device), y.to(device), target.to(device))

    train_split = split(data.X_train, data.y_train)
    val_split = split(data.X_val, data.y_val)
    weighted = loss_fn.class_weights is not None
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    n, batch_size = len(train_split.X), cfg.trainer.batch_size
    linears = model.linears
    backprop = Backprop([m.weight for m in linears], [m.bias for m in linears], model.act)
    optimizer = build_optimizer(cfg.optimizer, backprop.params)
    head = model.head
    readout = Readout.of(cfg, data.kind)
    activation = cfg.activation.name
    grad_clip = cfg.trainer.grad_clip  # read once: OmegaConf lookups cost ~40 us each
    gradient_of = closed_form_gradient(cfg.loss, cfg.head.name)

    def loss_and_grad(out, target, labels):
        """The batch's loss and its gradient with respect to the weight layers' output."""
        if gradient_of is None:
            return output_grad(out, lambda o: loss_fn(head(o), target, labels))
        # A closed form exists only for a linear head and no class weights: head and labels
        # would change nothing here.
        return loss_fn(out, target), gradient_of(out, target, len(out))

    result = TrainResult(status=OK, combo=combo)
    last_val: Dict[str, float] = {}
    for epoch in range(1, cfg.trainer.epochs + 1):
        step_losses = []
        grad_norm_sum = [torch.zeros((), device=device) for _ in linears]
        # One gather per epoch; the batches are then views (the same rows as indexing per step).
        perm = torch.randperm(n, generator=generator, device=device)
        batches = zip(train_split.X[perm].split(batch_size),
                      train_split.target[perm].split(batch_size),
                      train_split.y[perm].split(batch_size) if weighted else repeat(None))
        with torch.no_grad():
            for x, target, labels in batches:
                loss, grad_out = loss_and_grad(backprop.forward(x), target, labels)
                grads = backprop.backward(grad_out)
                torch._foreach_add_(grad_norm_sum, torch._foreach_norm(grads[0::2]))
                if grad_clip is not None:
                    clip_grad_norm_(grads, grad_clip)
                optimizer.step(grads)
                step_losses.append(loss)
        losses = torch.stack(step_losses)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):  # one host sync per epoch
            result.status = DIVERGED
            result.diverged_at_step = result.steps + int((~finite).nonzero()[0, 0]) + 1
            result.steps += len(step_losses)
            break
        result.steps += len(step_losses)

        val, hidden, _, _ = _evaluate(model, val_split, loss_fn, readout)
        mean_norms = torch.stack(grad_norm_sum) / len(step_losses)
        network = diagnostics.network_metrics([h[None] for h in hidden], mean_norms[:, None],
                                              activation)[0]
        record = epoch_record(float(losses.mean()), val, network)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        last_val = val

    test = None
    if result.status == OK:
        test_split = split(data.X_test, data.y_test)
        test, _, out, probs = _evaluate(model, test_split, loss_fn, readout)
        result.predictions = _predictions(test_split, out, probs)
    finish_result(result, cfg, data, test, last_val)
    return result


def finish_result(result: TrainResult, cfg, data: Dataset, test: Optional[Dict[str, float]],
                  last_val: Dict[str, float]) -> None:
    """Fill in the test metrics (when the run finished) and the diagnoses of a result."""
    if test is not None:
        result.test = {f"test/{k}": v for k, v in test.items() if k != "data_majority_fraction"}
        if data.kind != REGRESSION:
            result.test["test/target_entropy"] = target_entropy(cfg.loss.label_smoothing,
                                                                data.n_classes)
            if cfg.trainer.linear_baseline:
                result.test["test/logreg_accuracy"] = logreg_accuracy(data)
    final = dict(last_val)
    final.update({k: v for k, v in result.final.items() if "/" in k and not k.startswith("val/")})
    result.diagnoses = diagnose(final, status=result.status)
