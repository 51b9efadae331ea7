"""Training-time forward and a hand-written backward through the MLP's weight layers.

On a tiny CPU model autograd's engine, not arithmetic, is most of a step: each graph node costs
microseconds of bookkeeping. The MLP is a chain of affine maps and one elementwise activation,
so its gradients are, per layer, two matrix products, a column sum, and the activation's
derivative, computed here with the same derivative kernels autograd calls
(``activations.DERIVATIVES``): the same numbers, about 20% less time per step. The head and the
loss, where the variety is, go through autograd (``output_grad``), except the common pairs that
``losses.closed_form_gradient`` differentiates by hand (same numbers again). An activation with
no registered derivative trains through autograd end to end, with the same interface.

``batched=True`` handles K independent models stacked on a leading dimension (weights
``(K, out, in)``, inputs ``(K, batch, in)``): the vectorised-seeds path. There the parameters and
their gradients live in one flat buffer each (``FlatParams``): the backward writes each gradient
into its slice (``out=``, no allocation) and the optimiser updates all of them in one kernel
call on one tensor instead of one per parameter (a step 4-8% faster for 16 seeds).
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

from actloss_bench.activations import IN_PLACE, derivative

try:
    from torch.autograd.graph import _engine_run_backward as _run_backward
except ImportError:  # a torch without it: the public path, same numbers

    def _run_backward(outputs, seeds, retain_graph, create_graph, inputs, allow_unused,
                      accumulate_grad):
        return torch.autograd.grad(outputs, inputs, seeds)


def batched_affine(x: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ w_t + b`` for stacked models: x (K, batch, in), w_t (K, in, out), b (K, out).

    A product then an in-place bias add: ``torch.baddbmm`` first expands the bias into the
    output, which costs as much as half the product at these sizes (measured: 150 vs 106 us
    for 16 x (128 x 64 x 64) on 2 threads)."""
    return torch.bmm(x, w_t).add_(b[:, None, :])


class FlatParams:
    """Tensors copied into one flat buffer, with a same-shaped flat buffer for their gradients;
    ``params`` and ``grads`` are views of the originals' shapes (contiguous slices, so in-place
    updates of the flat buffers show through them and ``out=`` writes into them directly)."""

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.data = torch.cat([t.detach().reshape(-1) for t in tensors])
        self.grad = torch.zeros_like(self.data)
        self.shapes = [t.shape for t in tensors]
        self.params = self._views(self.data)
        self.grads = self._views(self.grad)

    def _views(self, flat: torch.Tensor) -> List[torch.Tensor]:
        views, start = [], 0
        for shape in self.shapes:
            size = shape.numel()
            views.append(flat[start:start + size].view(shape))
            start += size
        return views

    def grad_groups(self, first: int, last: int) -> List[torch.Tensor]:
        """The gradients of tensors ``first .. last - 1`` (adjacent in the buffer) as few views as
        possible: each run of equal shapes is one view with a leading dimension for the run, so
        one reduction covers it (the hidden layers' weights of an MLP share one shape)."""
        groups, i = [], first
        start = sum(s.numel() for s in self.shapes[:first])
        while i < last:
            j = i
            while j + 1 < last and self.shapes[j + 1] == self.shapes[i]:
                j += 1
            size = self.shapes[i].numel() * (j - i + 1)
            groups.append(self.grad[start:start + size].view(j - i + 1, *self.shapes[i]))
            start += size
            i = j + 1
        return groups


class Backprop:
    """Forward and backward of ``out = W_L act(... act(W_1 x + b_1) ...) + b_L``.

    ``forward`` runs without building a graph and keeps what ``backward`` needs;
    ``backward(grad_out)`` returns ``[dW_1, db_1, ..., dW_L, db_L]`` for the last forward,
    written into ``grads_out`` (same order) when given, else new tensors.
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 activation: nn.Module, *, batched: bool = False,
                 grads_out: Sequence[torch.Tensor] | None = None):
        self.grads_out = None if grads_out is None else list(grads_out)
        self.act = activation
        self.batched = batched
        self._derivative = derivative(activation)
        if self._derivative is None:
            # Autograd differentiates with respect to leaves that require grad; a plain tensor
            # (a view of a flat buffer) becomes one that shares its storage.
            weights = [_leaf(w) for w in weights]
            biases = [_leaf(b) for b in biases]
            self.weights, self.biases = list(weights), list(biases)
        else:
            self.weights = [w.detach() for w in weights]
            self.biases = [b.detach() for b in biases]
        self.params = [p for pair in zip(weights, biases) for p in pair]
        # The activation as called in forward: the module's own function, without nn.Module's
        # call overhead; in place on the pre-activation when its derivative does not read it.
        reads_input = self._derivative is not None and self._derivative[0] == "input"
        self._act_fn = (activation.forward if reads_input
                        else IN_PLACE.get(type(activation), activation.forward))
        # Transposed views, made once: they share storage, so they see every in-place update.
        self._weights_t = [w.transpose(-1, -2) for w in self.weights]
        self._saved: List[torch.Tensor] = []
        self._out: torch.Tensor | None = None

    @property
    def manual(self) -> bool:
        """True when the hand-written backward is used (the activation's derivative is known)."""
        return self._derivative is not None

    def _affine(self, x: torch.Tensor, i: int) -> torch.Tensor:
        w_t, b = self._weights_t[i], self.biases[i]
        if self.batched:
            return batched_affine(x, w_t, b)
        return torch.addmm(b, x, w_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.manual:
            with torch.enable_grad():
                self._out = self._plain_forward(x)
            return self._out.detach()
        uses_input = self._derivative[0] == "input"
        saved = [x]  # layer inputs, then what the activation's derivative reads
        act = self._act_fn
        h = x
        for i in range(len(self.weights) - 1):
            z = self._affine(h, i)
            h = act(z)
            saved.append(z if uses_input else h)
            saved.append(h)
        self._saved = saved
        return self._affine(h, len(self.weights) - 1)

    def _plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.weights) - 1):
            x = self.act(self._affine(x, i))
        return self._affine(x, len(self.weights) - 1)

    def backward(self, grad_out: torch.Tensor) -> List[torch.Tensor]:
        if not self.manual:
            grads = list(torch.autograd.grad(self._out, self.params, grad_out))
            self._out = None
            if self.grads_out is None:
                return grads
            torch._foreach_copy_(self.grads_out, grads)
            return self.grads_out
        _, local = self._derivative
        saved, n = self._saved, len(self.weights)
        out = self.grads_out
        grads: List[torch.Tensor] = out or [None] * (2 * n)  # type: ignore[list-item]
        g = grad_out
        for i in range(n - 1, -1, -1):
            layer_input = saved[2 * i]  # x for layer 0, else the previous activation's output
            if self.batched:
                if out is None:
                    grads[2 * i] = torch.bmm(g.transpose(1, 2), layer_input)
                    grads[2 * i + 1] = g.sum(1)
                else:
                    torch.bmm(g.transpose(1, 2), layer_input, out=out[2 * i])
                    torch.sum(g, 1, out=out[2 * i + 1])
            else:
                grads[2 * i] = torch.mm(g.t(), layer_input)
                grads[2 * i + 1] = g.sum(0)
            if i > 0:
                w = self.weights[i]
                if not self.batched:
                    g = torch.mm(g, w)
                elif w.shape[1] == 1:
                    # One output unit: the product is an outer product, one multiplication per
                    # element, so broadcasting gives the same numbers (bmm took 3x as long).
                    g = g * w
                else:
                    g = torch.bmm(g, w)
                g = local(self.act, g, saved[2 * i - 1])
        self._saved = []
        return grads


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t if t.requires_grad else nn.Parameter(t)


def output_grad(out: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``loss_of(out)`` and its gradient with respect to ``out``, through autograd.

    A loss with several elements (one per stacked model) is differentiated as their sum: the
    models are independent, so each gets the gradient of its own loss.
    """
    out = out.detach().requires_grad_()
    with torch.enable_grad():
        loss = loss_of(out)
    # The engine call torch.autograd.grad makes, without its ~25 us of argument checking per
    # step (the arguments here are always one tensor and its ones-shaped seed).
    (grad,) = _run_backward((loss,), (torch.ones_like(loss),), False, False, (out,), False,
                            False)
    return loss.detach(), grad
