"""Several seeds of one config trained as one batched model (``trainer.vectorize_seeds=K``).

A tiny MLP's step is Python overhead; K seeds stacked into batched weights (``torch.baddbmm``)
pay that overhead once per step instead of K times. Each seed keeps its own data draw, initial
weights, shuffling generator and optimiser state, so it follows the sequential path: the same
arithmetic, batched (matrix products may round in a different order, so values agree to float
tolerance, not bit for bit). Evaluation copies each seed's weights into an ordinary ``MLP`` and
reuses the sequential code, so every metric is computed the same way.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from actloss_bench.compat import INVALID, classify, output_dim
from actloss_bench.losses import encode_targets, make_loss
from actloss_bench.backprop import Backprop, output_grad
from actloss_bench.model import build_model
from actloss_bench.optim import build_optimizer
from actloss_bench.schema import ConfigError
from actloss_bench.tasks import make_dataset
from actloss_bench.training import (DIVERGED, OK, InvalidCombination, TrainResult, _evaluate,
                                    _predictions, _Split, epoch_record, finish_result,
                                    Readout, pick_device, split_metrics)

EpochCallback = Callable[[int, Dict[str, float]], None]


def config_for_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """The sequential job's config for one seed of a vectorised job."""
    one = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    one.seed = seed
    one.trainer.vectorize_seeds = 1
    return one


def train_seeds(cfg: DictConfig, seeds: Sequence[int],
                on_epoch: Optional[Sequence[Optional[EpochCallback]]] = None) -> List[TrainResult]:
    """Train ``cfg`` once per seed, all seeds in one batched model; one result per seed."""
    if cfg.loss.class_weight != "none":
        raise ConfigError("trainer.vectorize_seeds needs loss.class_weight=none (class weights "
                          "differ per seed's data); run those seeds sequentially")
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    device = pick_device(cfg.trainer.device)
    data = [make_dataset(cfg.task, s) for s in seeds]
    kind, k = data[0].kind, data[0].n_classes
    combo = classify(kind, cfg.head.name, cfg.loss.name)
    if combo.verdict == INVALID:
        raise InvalidCombination(combo.reason)
    out_dim = output_dim(kind, cfg.head.name, cfg.loss.name, k)

    models = []
    for s, d in zip(seeds, data):
        torch.manual_seed(s)  # the sequential path's initial weights for this seed
        # build_model reads only model/activation/head, the same for every seed: no per-seed
        # config copy (OmegaConf.create costs ~8 ms).
        models.append(build_model(cfg, in_dim=d.n_features, out_dim=out_dim).to(device))
    n_layers = len(models[0].linears)
    weights = [torch.nn.Parameter(torch.stack([m.linears[i].weight.detach() for m in models]))
               for i in range(n_layers)]
    biases = [torch.nn.Parameter(torch.stack([m.linears[i].bias.detach() for m in models]))
              for i in range(n_layers)]
    act, head = models[0].act, models[0].head
    backprop = Backprop(weights, biases, act, batched=True)
    optimizer = build_optimizer(cfg.optimizer, backprop.params)
    loss_fns = [make_loss(cfg.loss, kind=kind, out_dim=out_dim, n_classes=k, y_train=d.y_train)
                for d in data]
    per_sample = loss_fns[0].per_sample

    def encode(y):
        return encode_targets(y, kind=kind, loss=cfg.loss.name, out_dim=out_dim, n_classes=k,
                              label_smoothing=cfg.loss.label_smoothing).to(device)

    X = torch.stack([d.X_train for d in data]).to(device)
    T = torch.stack([encode(d.y_train) for d in data])
    val = [_Split(d.X_val.to(device), d.y_val.to(device), encode(d.y_val)) for d in data]
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    S, n = len(seeds), X.shape[1]
    rows = torch.arange(S, device=device)[:, None]
    grad_clip, batch_size = cfg.trainer.grad_clip, cfg.trainer.batch_size
    readout, activation = Readout.of(cfg, kind), cfg.activation.name
    results = [TrainResult(status=OK, combo=combo) for _ in seeds]
    active = torch.ones(S, dtype=torch.bool)
    last_val: List[Dict[str, float]] = [{} for _ in seeds]

    def forward_with_hidden(x):
        hidden = []
        for i in range(n_layers - 1):
            x = act(torch.baddbmm(biases[i][:, None, :], x, weights[i].transpose(1, 2)))
            hidden.append(x)
        out = torch.baddbmm(biases[-1][:, None, :], x, weights[-1].transpose(1, 2))
        return head(out), hidden

    X_val = torch.stack([v.X for v in val])

    for epoch in range(1, cfg.trainer.epochs + 1):
        perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
        step_losses = []
        grad_norm_sum = torch.zeros(n_layers, S, device=device)
        with torch.no_grad():
            for idx in perms.split(batch_size, dim=1):
                target = T[rows, idx].flatten(0, 1)
                # Seeds are independent: the gradient of the sum gives each seed its own.
                seed_losses, grad_out = output_grad(
                    backprop.forward(X[rows, idx]),
                    lambda out: per_sample(head(out).flatten(0, 1), target).view(S, -1).mean(1))
                grads = backprop.backward(grad_out)
                grad_norm_sum += torch.stack([g.flatten(1).norm(dim=1) for g in grads[0::2]])
                if grad_clip is not None:
                    _clip_per_seed(grads, grad_clip)
                optimizer.step(grads)
                step_losses.append(seed_losses)
        losses = torch.stack(step_losses, 1)  # (S, steps)
        finite = torch.isfinite(losses)
        with torch.inference_mode():
            out_val, hidden_val = forward_with_hidden(X_val)
        for s in range(S):
            if not active[s]:
                continue
            r = results[s]
            if not bool(finite[s].all()):
                r.status = DIVERGED
                r.diverged_at_step = r.steps + int((~finite[s]).nonzero()[0, 0]) + 1
                r.steps += losses.shape[1]
                active[s] = False
                continue
            r.steps += losses.shape[1]
            metrics, hidden, _, _ = split_metrics(out_val[s], [h[s] for h in hidden_val],
                                                  val[s], loss_fns[s], readout)
            record = epoch_record(float(losses[s].mean()), metrics, hidden, grad_norm_sum[:, s],
                                  losses.shape[1], activation)
            r.history.append(record)
            last_val[s] = metrics
            if on_epoch is not None and on_epoch[s] is not None:
                on_epoch[s](epoch, record)
        if not bool(active.any()):
            break

    for s, (r, d) in enumerate(zip(results, data)):
        if r.status == OK:
            _copy_seed(models[s], weights, biases, s)
            test = _Split(d.X_test.to(device), d.y_test.to(device), encode(d.y_test))
            metrics, _, out, probs = _evaluate(models[s], test, loss_fns[s], readout)
            r.predictions = _predictions(test, out, probs)
            finish_result(r, cfg, d, metrics, last_val[s])
        else:
            finish_result(r, cfg, d, None, last_val[s])
    return results


def _copy_seed(model, weights, biases, s: int) -> None:
    with torch.no_grad():
        for layer, w, b in zip(model.linears, weights, biases):
            layer.weight.copy_(w[s])
            layer.bias.copy_(b[s])


def _clip_per_seed(grads: List[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ for each seed separately (the stacked dim 0 is the seed)."""
    total = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
