"""Adam, AdamW and SGD as one call each to torch's fused kernels, given the gradients directly.

``torch.optim`` runs the same kernels (``torch._fused_adam_``, ``torch._fused_adamw_``,
``torch._fused_sgd_``) but wraps each step in ~150 us of Python (profiler hooks, grouping the
tensors by device and dtype, state look-ups); on a tiny MLP that is a third of a step. These
classes keep their state in flat lists, take the gradients as a list (the hand-written backward
in ``backprop.py`` never stores ``.grad``), and update the parameters in place. Their updates
equal ``torch.optim``'s with ``fused=True`` bit for bit (tests/test_optim.py).
"""

from __future__ import annotations

from typing import List, Sequence

import torch

# torch.optim's defaults, which the configs do not expose.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class FusedAdam:
    """Adam (L2 weight decay added to the gradient) or, with ``decoupled``, AdamW."""

    def __init__(self, params: Sequence[torch.Tensor], *, lr: float, weight_decay: float = 0.0,
                 decoupled: bool = False):
        self.params = [p.detach() for p in params]  # same storage: updates land in the model
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        # One step counter shared by every parameter (the kernel only reads it): one increment
        # per step instead of a foreach over the parameters.
        self.step_count = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self._steps = [self.step_count] * len(self.params)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self._kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_

    def step(self, grads: List[torch.Tensor]) -> None:
        self.step_count += 1
        self._kernel(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self._steps,
                     amsgrad=False, lr=self.lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                     weight_decay=self.weight_decay, eps=ADAM_EPS, maximize=False)


class FusedSGD:
    """SGD with optional (heavy-ball) momentum and L2 weight decay."""

    def __init__(self, params: Sequence[torch.Tensor], *, lr: float, weight_decay: float = 0.0,
                 momentum: float = 0.0):
        self.params = [p.detach() for p in params]
        self.lr, self.weight_decay, self.momentum = float(lr), float(weight_decay), float(momentum)
        # As torch.optim.SGD: the first step copies the gradient into the momentum buffer.
        self.buffers = [torch.empty_like(p) for p in self.params] if momentum else []
        self._first = True

    def step(self, grads: List[torch.Tensor]) -> None:
        torch._fused_sgd_(self.params, grads, self.buffers, weight_decay=self.weight_decay,
                          momentum=self.momentum, lr=self.lr, dampening=0.0, nesterov=False,
                          maximize=False, is_first_step=self._first and bool(self.buffers),
                          grad_scale=None, found_inf=None)
        self._first = False


Optimizer = FusedAdam | FusedSGD


def build_optimizer(cfg, params: Sequence[torch.Tensor]) -> Optimizer:
    """The optimiser ``cfg.name`` names (``adam``, ``adamw``, ``sgd``) over ``params``."""
    params = list(params)
    if cfg.name in ("adam", "adamw"):
        return FusedAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         decoupled=cfg.name == "adamw")
    if cfg.name == "sgd":
        return FusedSGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    raise KeyError(cfg.name)


def clip_grad_norm_(grads: List[torch.Tensor], max_norm: float) -> None:
    """Scale ``grads`` in place so their joint L2 norm is at most ``max_norm``
    (torch.nn.utils.clip_grad_norm_'s arithmetic, on a list of gradients)."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
