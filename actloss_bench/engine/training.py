"""The training loop: one population of K >= 1 models, trained together.

Every model of a population shares the architecture and the config; each has its own seed (data
draw, initial weights, shuffling order) and its own learning rate. K = 1 is an ordinary single
run. A tiny MLP's step is Python overhead, so K models stacked into batched weights pay it once:
each layer is one ``torch.baddbmm`` over (K, batch, features), the loss is the sum of the K
models' mean losses (so autograd gives each model the gradient of its own loss), and one
``torch.optim`` optimiser holds one parameter group per learning rate.

The step reads like the textbook: forward, loss, backward, clip (per model), optimiser step.
Evaluation and diagnostics run once per epoch on the validation split. A non-finite loss is a
result, not a crash: that model is marked ``diverged`` with its first bad step and the others
train on (their weights never mix: every operation is per model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from actloss_bench.engine import diagnostics
from actloss_bench.engine.compat import INVALID, Combo, classify, output_dim
from actloss_bench.engine.diagnoses import diagnose
from actloss_bench.engine.evaluate import (Units, escape_epoch, logreg_accuracy, output_metrics,
                                            predictions_frame, regression_outputs,
                                            target_entropy, temperature_scaled)
from actloss_bench.engine.losses import encode_targets, make_loss
from actloss_bench.engine.model import build_model
from actloss_bench.engine.protocol import Member
from actloss_bench.engine.activations import make_activation, make_head
from actloss_bench.engine.tasks import BINARY, MULTICLASS, MULTILABEL, REGRESSION, make_dataset

OK, DIVERGED = "ok", "diverged"
EpochCallback = Callable[[int, Dict[str, float]], None]


class InvalidCombination(ValueError):
    """The task x head x loss cell cannot run; the message says why."""


@dataclass
class TrainResult:
    status: str
    combo: Combo
    kind: str  # the task's kind: regression, binary, multiclass or multilabel
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


def build_optimizer(cfg, groups: List[dict]) -> torch.optim.Optimizer:
    """torch.optim's Adam, AdamW or SGD over parameter groups that each carry their own lr."""
    # foreach: one kernel per operation over all of a group's tensors (torch picks it by
    # default on CUDA only; on the CPU it makes a population's step ~10% faster).
    if cfg.name == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay, foreach=True)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           foreach=True)


def clip_per_model(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` for each model of stacked parameters (dim 0 = model)."""
    total = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in params]).sum(0).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))


class Population:
    """K stacked MLPs: per layer a weight (K, in, out) and a bias (K, 1, out), built from the
    same ``nn.Linear`` initialisation a single model of each seed gets. Models are ordered by
    learning rate, one parameter group per rate (``groups``)."""

    def __init__(self, cfg, members: Sequence[Member], in_dim: int, out_dim: int,
                 device: torch.device):
        initial = {}
        for seed in dict.fromkeys(m.seed for m in members):
            torch.manual_seed(seed)
            initial[seed] = [(layer.weight.detach().T, layer.bias.detach()[None])
                             for layer in build_model(cfg, in_dim=in_dim, out_dim=out_dim).linears]
        self.lrs = list(dict.fromkeys(m.lr for m in members))
        self.order = [i for lr in self.lrs for i, m in enumerate(members) if m.lr == lr]
        self.groups = []
        for lr in self.lrs:
            seeds = [m.seed for m in members if m.lr == lr]
            params = [torch.stack([initial[s][layer][part] for s in seeds]).to(device)
                      .requires_grad_() for layer in range(len(initial[seeds[0]]))
                      for part in (0, 1)]
            self.groups.append({"params": params, "lr": lr})
        self.n_layers = len(self.groups[0]["params"]) // 2
        self.act = make_activation(cfg.activation.name)
        self.head = make_head(cfg.head.name)

    @property
    def params(self) -> List[torch.Tensor]:
        return [p for g in self.groups for p in g["params"]]

    def layer(self, i: int):
        """Layer ``i``'s stacked weight and bias over every group (views when one group)."""
        parts = [(g["params"][2 * i], g["params"][2 * i + 1]) for g in self.groups]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts])

    def forward(self, x: torch.Tensor):
        """Outputs (K, N, O) after the head, and each hidden layer's outputs (K, N, width)."""
        hidden = []
        for i in range(self.n_layers):
            weight, bias = self.layer(i)
            x = torch.baddbmm(bias, x, weight)
            if i < self.n_layers - 1:
                x = self.act(x)
                hidden.append(x)
        return self.head(x), hidden

    def grad_norms(self) -> torch.Tensor:
        """Each weight's gradient norm per model, (layers, K)."""
        return torch.stack([torch.cat([torch.linalg.vector_norm(g["params"][2 * i].grad,
                                                                 dim=(1, 2))
                                       for g in self.groups]) for i in range(self.n_layers)])


@dataclass
class _Split:
    X: torch.Tensor  # (K, N, features)
    y: torch.Tensor  # (K, N) labels or values
    target: torch.Tensor  # encoded for the loss


def train(cfg, *, on_epoch: Optional[EpochCallback] = None, eval_every: int = 1) -> TrainResult:
    """Train the one model ``cfg`` describes (its seed, its learning rate)."""
    return train_population(cfg, [Member(cfg.seed, cfg.optimizer.lr)],
                            on_epoch=None if on_epoch is None else [on_epoch],
                            eval_every=eval_every)[0]


def train_population(cfg, members: Sequence[Member],
                     on_epoch: Optional[Sequence[Optional[EpochCallback]]] = None,
                     eval_every: int = 1) -> List[TrainResult]:
    """Train one model per member as ``cfg`` says; one result per member, in order.
    ``on_epoch[k](epoch, metrics)`` receives member k's metrics after each epoch. The
    validation split is evaluated every ``eval_every`` epochs (0: the last only) and always
    after the last; other epochs record the training loss and gradient norms only.

    Raises InvalidCombination before any work when the task x head x loss cell cannot run.
    """
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    device = pick_device(cfg.trainer.device)
    datasets = {s: make_dataset(cfg.task, s) for s in dict.fromkeys(m.seed for m in members)}
    first = next(iter(datasets.values()))
    kind, n_classes = first.kind, first.n_classes
    head_name, loss_name = cfg.head.name, cfg.loss.name
    combo = classify(kind, head_name, loss_name, cfg.task.target_scaling)
    if combo.verdict == INVALID:
        raise InvalidCombination(combo.reason)
    if kind == MULTILABEL and cfg.loss.class_weight == "balanced" \
            and loss_name != "bce_with_logits":
        raise InvalidCombination(f"class weights on a multilabel task work through "
                                 f"bce_with_logits's pos_weight only, not loss={loss_name}")
    out_dim = output_dim(kind, head_name, loss_name, n_classes)

    net = Population(cfg, members, first.n_features, out_dim, device)
    ordered = [members[i] for i in net.order]  # the population's order: grouped by lr
    data = [datasets[m.seed] for m in ordered]

    def stacked(part: str) -> _Split:
        X = torch.stack([getattr(d, f"X_{part}") for d in data]).to(device)
        y = torch.stack([getattr(d, f"y_{part}") for d in data]).to(device)
        target = encode_targets(y, kind=kind, loss=loss_name, out_dim=out_dim,
                                n_classes=n_classes, label_smoothing=cfg.loss.label_smoothing)
        return _Split(X, y, target)

    train_split, val_split = stacked("train"), stacked("val")
    loss_fn = make_loss(cfg.loss, kind=kind, out_dim=out_dim, n_classes=n_classes,
                        y_train=train_split.y.cpu())
    if loss_fn.class_weights is not None:
        loss_fn.class_weights = loss_fn.class_weights.to(device)
    optimizer = build_optimizer(cfg.optimizer, net.groups)
    generators = [torch.Generator(device=device).manual_seed(m.seed) for m in ordered]
    K, n = train_split.X.shape[:2]
    offsets = torch.arange(K, device=device)[:, None] * n
    batch_size, grad_clip = cfg.trainer.batch_size, cfg.trainer.grad_clip
    activation = cfg.activation.name

    units = Units(np.array([d.metric_scale for d in data]),
                  np.array([d.metric_shift for d in data]))

    def evaluate(split: _Split, residual_var=None):
        with torch.no_grad():
            out, hidden = net.forward(split.X)
            losses = loss_fn(out, split.target, split.y).tolist()
        rows, probs = output_metrics(losses, out, split.y, kind, head_name, loss_name, units,
                                     residual_var)
        return rows, hidden, out, probs

    results = [TrainResult(status=OK, combo=combo, kind=kind) for _ in ordered]
    callbacks = [None] * K if on_epoch is None else [on_epoch[i] for i in net.order]
    active = torch.ones(K, dtype=torch.bool)
    with torch.no_grad():  # units dead before any training ("born dead"), apart from dying
        hidden = net.forward(val_split.X)[1]
    widths = [h.shape[-1] for h in hidden]
    dead_at_init = ([diagnostics.dead_record(counts, widths)["dead/fraction"]
                     for counts in torch.stack(diagnostics.dead_counts(hidden), 1).tolist()]
                    if hidden else [0.0] * K)
    for epoch in range(1, cfg.trainer.epochs + 1):
        # Each model's own shuffle; one gather per epoch, then the batches are views. Row
        # k * n + i of a flattened split is model k's sample i (index_select is ~5x faster
        # than take_along_dim here).
        perm = torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
        rows = (perm + offsets).flatten()
        shuffled = [t.flatten(0, 1).index_select(0, rows).view(t.shape)
                    for t in (train_split.X, train_split.target, train_split.y)]
        step_losses, norm_sum = [], torch.zeros(net.n_layers, K, device=device)
        for x, target, labels in zip(*(t.split(batch_size, dim=1) for t in shuffled)):
            out, _ = net.forward(x)
            loss = loss_fn(out, target, labels)  # (K,): each model's mean loss
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            norm_sum += net.grad_norms()
            if grad_clip is not None:
                for group in net.groups:  # groups may hold different numbers of models
                    clip_per_model(group["params"], grad_clip)
            optimizer.step()
            step_losses.append(loss.detach())
        losses = torch.stack(step_losses, 1)  # (K, steps)
        finite = torch.isfinite(losses)
        newly_bad = active & ~finite.all(1)
        mean_norms = norm_sum / losses.shape[1]
        evaluated = epoch == cfg.trainer.epochs or (eval_every and epoch % eval_every == 0)
        if evaluated:
            val, hidden, _, val_probs = evaluate(val_split)
            network = diagnostics.network_metrics(hidden, mean_norms, activation)
        else:  # gradient norms only: they come from the steps, not from an evaluation
            val = [{} for _ in range(K)]
            network = [diagnostics.grad_norm_metrics(n) for n in mean_norms.T.tolist()]
        train_loss = losses.mean(1).tolist()
        for k in range(K):
            r = results[k]
            if not active[k]:
                continue
            if newly_bad[k]:
                r.status = DIVERGED
                r.diverged_at_step = r.steps + int((~finite[k]).nonzero()[0, 0]) + 1
                r.steps += losses.shape[1]
                continue
            r.steps += losses.shape[1]
            record = {"train/loss": train_loss[k], **network[k],
                      **{f"val/{key}": v for key, v in val[k].items()
                         if key != "data_majority_fraction"}}
            r.history.append(record)
            if callbacks[k] is not None:
                callbacks[k](epoch, record)
        active &= ~newly_bad
        if not active.any():
            break

    if not evaluated:  # stopped early (every model diverged) between evaluations
        val, _, _, val_probs = evaluate(val_split)
    test_split = stacked("test")
    # A model without its own variance predicts with its validation mean squared error.
    val_mse = np.array([row.get("rmse", np.nan) ** 2 for row in val]) \
        if kind == REGRESSION else None
    test, test_hidden, out, probs = evaluate(test_split, val_mse)
    # Diagnoses read the test split: the network's units on test inputs, with the last
    # epoch's gradient norms.
    test_network = diagnostics.network_metrics(test_hidden, mean_norms, activation)
    labels, outputs, variances = test_split.y.cpu().numpy(), out.cpu().numpy(), None
    if kind == REGRESSION:
        labels = units(labels.astype(float))
        outputs, variances = regression_outputs(out, loss_name, units, None)
    if probs is not None and kind != MULTILABEL:  # last epoch's validation: weights unchanged
        calibrated = temperature_scaled(val_probs, val_split.y.cpu().numpy(), probs, labels)
        for row, extra in zip(test, calibrated):
            row.update(extra)
    # One baseline fit per data draw (models at other learning rates share it).
    baselines = ({s: logreg_accuracy(d) for s, d in datasets.items()}
                 if cfg.trainer.linear_baseline and kind in (BINARY, MULTICLASS) else {})
    for k, (r, m) in enumerate(zip(results, ordered)):
        if r.status == OK:
            r.predictions = predictions_frame(labels[k], outputs[k],
                                         None if probs is None else probs[k], kind,
                                         None if variances is None else variances[k])
            r.test = {f"test/{key}": v for key, v in test[k].items()
                      if key != "data_majority_fraction"}
            r.test.update({f"test/{key}": test_network[k][key]
                           for key in ("dead/fraction", "saturation/fraction")
                           if key in test_network[k]})
            r.test["init/dead/fraction"] = dead_at_init[k]
            if kind in (BINARY, MULTICLASS):
                r.test["test/target_entropy"] = target_entropy(cfg.loss.label_smoothing,
                                                               n_classes)
                if baselines:
                    r.test["test/logreg_accuracy"] = baselines[m.seed]
                r.test["escape_epoch"] = escape_epoch(r.history, n_classes)
        r.diagnoses = diagnose({**test[k], **test_network[k]}, status=r.status)
    # Back to the members' order.
    by_member = [None] * K
    for position, index in enumerate(net.order):
        by_member[index] = results[position]
    return by_member
