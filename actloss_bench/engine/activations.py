"""Hidden-layer activations and output heads: torch's own modules, registered by config name.

``conf/activation/<name>.yaml`` and ``conf/head/<name>.yaml`` choose from these registries
(tests tie each registry to its config folder).
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

HEADS: Dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,  # raw logits / values
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=-1),
    "log_softmax": lambda: nn.LogSoftmax(dim=-1),
    # Bounded and positive heads for regression targets of a known range or sign.
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
}
# Heads whose outputs are neither scores nor probabilities of a class.
VALUE_HEADS = ("tanh", "softplus", "relu")

# Flat tails of the saturating activations, as a test on the unit's *output*: a unit is in its
# tail when its local derivative is below ~4% of its maximum (sigmoid: s(1-s) < 0.01, i.e.
# s < 0.0101 or s > 0.9899; tanh: 1 - t^2 < 0.04, i.e. |t| > 0.98). Glorot & Bengio (2010)
# read saturation the same way off the outputs.
SATURATION_TESTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": lambda h: (h < 0.0101) | (h > 0.9899),
    "tanh": lambda h: h.abs() > 0.98,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def make_head(name: str) -> nn.Module:
    return HEADS[name]()
