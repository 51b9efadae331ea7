"""Per-epoch diagnostics of the network itself: dead units, saturation, gradient norms.

Pure functions over tensors; the training loop calls them once per epoch. Hidden outputs may
carry leading model dimensions ((S, N, W) for S vectorised seeds): counts are taken per model,
and ``network_metrics`` reads them from the device in one go, one dict per model.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from actloss_bench.engine.activations import SATURATION_TESTS


def dead_counts(hidden: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Per hidden layer: units that output exactly 0 on every input given (one count per model).

    ``max h == min h == 0`` over the inputs: ~10x faster than ``(h == 0).all(0)`` and than
    ``torch.aminmax``, and, on 16 stacked models' (800, 64) outputs, 3.4x faster than
    ``h.abs().amax() == 0``, whose ``abs`` copies every output (measured 79 vs 271 us; on one
    model 15 vs 13 us). A NaN output makes both reductions NaN: not dead.
    """
    return [((h.amax(-2) == 0) & (h.amin(-2) == 0)).sum(-1) for h in hidden]


def saturated_count(hidden: Sequence[torch.Tensor], activation: str) -> torch.Tensor | None:
    """Per model: (unit, input) outputs in the flat tails of a sigmoid/tanh; None for others."""
    test = SATURATION_TESTS.get(activation)
    if test is None or not hidden:
        return None
    return sum(test(h).sum((-2, -1)) for h in hidden)


def dead_record(counts: Sequence[int], widths: Sequence[int]) -> Dict[str, float]:
    """``dead/fraction`` over all hidden units (layers weighted by width) and ``dead/layer_<i>``."""
    out = {"dead/fraction": sum(counts) / sum(widths) if widths else 0.0}
    out.update({f"dead/layer_{i}": n / w for i, (n, w) in enumerate(zip(counts, widths))})
    return out


def dead_metrics(hidden: Sequence[torch.Tensor]) -> Dict[str, float]:
    """``dead_record`` of one model's hidden outputs, each (N, W)."""
    return dead_record([int(c) for c in dead_counts(hidden)], [h.shape[-1] for h in hidden])


def saturation_fraction(hidden: Sequence[torch.Tensor], activation: str) -> float | None:
    """Fraction of one model's (unit, input) outputs in the flat tails of a sigmoid/tanh."""
    flat = saturated_count(hidden, activation)
    return None if flat is None else int(flat) / sum(h.numel() for h in hidden)


def grad_norm_metrics(mean_norms: Sequence[float]) -> Dict[str, float]:
    """``grad_norm/layer_<i>`` and ``grad_norm/ratio_first_last`` (input layer over output)."""
    out = {f"grad_norm/layer_{i}": float(v) for i, v in enumerate(mean_norms)}
    last = float(mean_norms[-1])
    out["grad_norm/ratio_first_last"] = float(mean_norms[0]) / last if last > 0 else float("nan")
    return out


def network_metrics(hidden: Sequence[torch.Tensor], mean_grad_norms: torch.Tensor,
                    activation: str) -> List[Dict[str, float]]:
    """Dead units, saturation and gradient norms of S models, one dict per model.

    ``hidden``: per hidden layer, outputs (S, N, W); ``mean_grad_norms``: (layers, S), the mean
    over the epoch's steps of each weight's gradient norm."""
    n_models = mean_grad_norms.shape[1]
    widths = [h.shape[-1] for h in hidden]
    per_unit = sum(h[0].numel() for h in hidden)
    counts = [[]] * n_models
    if hidden:
        counts = torch.stack(dead_counts(hidden), 1).tolist()
    flat = saturated_count(hidden, activation)
    flat = [None] * n_models if flat is None else flat.tolist()
    records = []
    for dead, sat, norms in zip(counts, flat, mean_grad_norms.T.tolist()):
        record = dead_record(dead, widths)
        if sat is not None:
            record["saturation/fraction"] = sat / per_unit
        record.update(grad_norm_metrics(norms))
        records.append(record)
    return records
