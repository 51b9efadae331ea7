"""The MLP under test: ``depth`` hidden layers of ``width`` units, one activation, one head."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from actloss_bench.engine.activations import make_activation, make_head


class MLP(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, *, depth: int, width: int,
                 activation: str, head: str):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], out_dim)
        self.act = make_activation(activation)
        self.head = make_head(head)

    @property
    def linears(self) -> List[nn.Linear]:
        """Every weight layer, input to output: ``layer_<i>`` in the logged metrics."""
        return [*self.hidden, self.out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.head(self.out(x))


def initialise(model: MLP, *, init: str, init_scale: float, bias_init) -> None:
    """Apply ``model.init`` to every weight layer, then scale, then set hidden biases.

    kaiming: He normal (gain sqrt 2, fan_in) whatever the activation; xavier: Glorot normal
    (gain 1). Using each rule with the "wrong" activation is what the init experiment measures.
    """
    with torch.no_grad():
        for layer in model.linears:
            if init == "kaiming":
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            elif init == "xavier":
                nn.init.xavier_normal_(layer.weight)
            elif init == "normal":
                nn.init.normal_(layer.weight, std=1.0)
            layer.weight.mul_(init_scale)
            if init != "default":
                nn.init.zeros_(layer.bias)
        if bias_init is not None:
            for layer in model.hidden:
                nn.init.constant_(layer.bias, float(bias_init))


def build_model(cfg, *, in_dim: int, out_dim: int) -> MLP:
    model = MLP(in_dim, out_dim, depth=cfg.model.depth, width=cfg.model.width,
                activation=cfg.activation.name, head=cfg.head.name)
    initialise(model, init=cfg.model.init, init_scale=cfg.model.init_scale,
               bias_init=cfg.model.bias_init)
    return model
