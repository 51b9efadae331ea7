"""Hidden-layer activations and output heads: torch's own modules, registered by config name.

``conf/activation/<name>.yaml`` and ``conf/head/<name>.yaml`` choose from these registries
(tests tie each registry to its config folder).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

aten = torch.ops.aten

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
}

# Flat tails of the saturating activations, as a test on the unit's *output*: a unit is in its
# tail when its local derivative is below ~4% of its maximum (sigmoid: s(1-s) < 0.01, i.e.
# s < 0.0101 or s > 0.9899; tanh: 1 - t^2 < 0.04, i.e. |t| > 0.98). Glorot & Bengio (2010)
# read saturation the same way off the outputs.
SATURATION_TESTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": lambda h: (h < 0.0101) | (h > 0.9899),
    "tanh": lambda h: h.abs() > 0.98,
}


# Each activation's derivative as the kernel autograd itself calls for it (derivatives.yaml), for
# the hand-written backward in backprop.py: (what it reads, the activation's "input" or "output";
# grad_in = f(module, grad_out, that tensor)). An activation missing here trains through autograd.
Derivative = Tuple[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]]
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
DERIVATIVES: Dict[type, Derivative] = {
    nn.Identity: ("output", lambda m, g, h: g),
    nn.ReLU: ("output", lambda m, g, h: aten.threshold_backward(g, h, 0)),
    nn.LeakyReLU: ("input", lambda m, g, z: aten.leaky_relu_backward(g, z, m.negative_slope,
                                                                      False)),
    nn.ELU: ("input", lambda m, g, z: aten.elu_backward(g, m.alpha, 1, 1, False, z)),
    nn.SELU: ("input", lambda m, g, z: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1, False, z)),
    nn.GELU: ("input", lambda m, g, z: aten.gelu_backward(g, z, approximate=m.approximate)),
    nn.SiLU: ("input", lambda m, g, z: aten.silu_backward(g, z)),
    nn.Mish: ("input", lambda m, g, z: aten.mish_backward(g, z)),
    nn.Softplus: ("input", lambda m, g, z: aten.softplus_backward(g, z, m.beta, m.threshold)),
    nn.Sigmoid: ("output", lambda m, g, h: aten.sigmoid_backward(g, h)),
    nn.Tanh: ("output", lambda m, g, h: aten.tanh_backward(g, h)),
}


# In-place forms of the activations whose derivative reads their output: the pre-activation is
# then not needed, and overwriting it saves allocating (and first touching) a new tensor, which
# costs more than the arithmetic for the stacked tensors of vectorised seeds.
IN_PLACE: Dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.Identity: lambda z: z,
    nn.ReLU: torch.relu_,
    nn.Sigmoid: torch.sigmoid_,
    nn.Tanh: torch.tanh_,
}


def derivative(module: nn.Module) -> Optional[Derivative]:
    """The registered derivative of an activation module, or None (exact type match: a
    subclass may compute something else)."""
    return DERIVATIVES.get(type(module))


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def make_head(name: str) -> nn.Module:
    return HEADS[name]()
