"""The hand-written backward gives autograd's gradients, for every activation."""

import pytest
import torch
from torch import nn

from actloss_bench.activations import ACTIVATIONS, DERIVATIVES, make_activation
from actloss_bench.backprop import Backprop, FlatParams, output_grad


def _layers(seed, dims=(5, 7, 6, 2), scale=1.0, batch=()):
    g = torch.Generator().manual_seed(seed)
    weights = [nn.Parameter(scale * torch.randn(*batch, b, a, generator=g))
               for a, b in zip(dims[:-1], dims[1:])]
    biases = [nn.Parameter(torch.randn(*batch, b, generator=g)) for b in dims[1:]]
    return weights, biases


def _autograd(weights, biases, act, x, loss_of):
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        h = act(h @ w.transpose(-1, -2) + b.unsqueeze(-2))
    out = h @ weights[-1].transpose(-1, -2) + biases[-1].unsqueeze(-2)
    params = [p for pair in zip(weights, biases) for p in pair]
    return torch.autograd.grad(loss_of(out), params)


def test_every_activation_has_a_derivative():
    assert {type(make_activation(n)) for n in ACTIVATIONS} <= set(DERIVATIVES)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_matches_autograd(name):
    act = make_activation(name)
    weights, biases = _layers(1, scale=2.0)  # large pre-activations reach every branch
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(2))
    target = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))

    def loss_of(out):
        return ((torch.tanh(out) - target) ** 2).mean()

    bp = Backprop(weights, biases, act)
    assert bp.manual
    with torch.no_grad():
        loss, grad_out = output_grad(bp.forward(x), loss_of)
        ours = bp.backward(grad_out)
    ref = _autograd(weights, biases, act, x, loss_of)
    assert float(loss) == pytest.approx(float(loss_of(bp.forward(x))))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_batched_equals_each_model_alone():
    act = nn.GELU()
    weights, biases = _layers(4, batch=(3,))
    x = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(5))
    bp = Backprop(weights, biases, act, batched=True)
    with torch.no_grad():
        losses, grad_out = output_grad(bp.forward(x), lambda out: out.pow(2).mean((1, 2)))
        batched = bp.backward(grad_out)
    assert losses.shape == (3,)
    for k in range(3):
        one = Backprop([w[k] for w in weights], [b[k] for b in biases], act)
        with torch.no_grad():
            _, g = output_grad(one.forward(x[k]), lambda out: out.pow(2).mean())
            for a, b in zip(one.backward(g), batched):
                # batched products sum in another order: float tolerance, not bitwise
                torch.testing.assert_close(a, b[k], rtol=1e-4, atol=1e-5)


class Cube(nn.Module):  # no registered derivative: trains through autograd
    def forward(self, x):
        return x ** 3


def test_unregistered_activation_falls_back_to_autograd():
    weights, biases = _layers(6)
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(7))
    bp = Backprop(weights, biases, Cube())
    assert not bp.manual
    with torch.no_grad():
        _, grad_out = output_grad(bp.forward(x), lambda out: out.abs().mean())
        ours = bp.backward(grad_out)
    ref = _autograd(weights, biases, Cube(), x, lambda out: out.abs().mean())
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def _flat_backprop(weights, biases, act):
    """A batched Backprop over a FlatParams copy of ``weights`` and ``biases``, as the
    vectorised-seeds path builds it."""
    n = len(weights)
    flat = FlatParams(list(weights) + list(biases))
    out = [g for pair in zip(flat.grads[:n], flat.grads[n:]) for g in pair]
    return flat, Backprop(flat.params[:n], flat.params[n:], act, batched=True, grads_out=out)


@pytest.mark.parametrize("act", [nn.ReLU(), nn.GELU(), Cube()], ids=["relu", "gelu", "cube"])
@pytest.mark.parametrize("out_units", [1, 2])
def test_gradients_written_into_the_flat_buffer_equal_new_tensors(act, out_units):
    # out_units=1: the output layer's input gradient is an outer product, broadcast instead
    # of bmm; both give the same numbers bit for bit.
    weights, biases = _layers(8, dims=(5, 7, 7, 7, out_units), scale=0.3, batch=(3,))
    x = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(9))
    plain = Backprop([w.detach().clone().requires_grad_() for w in weights],
                     [b.detach().clone().requires_grad_() for b in biases], act, batched=True)
    flat, into_buffer = _flat_backprop(weights, biases, act)

    def loss_of(out):
        return out.pow(2).mean((1, 2))

    with torch.no_grad():
        _, g = output_grad(plain.forward(x), loss_of)
        expected = plain.backward(g)
        _, g = output_grad(into_buffer.forward(x), loss_of)
        got = into_buffer.backward(g)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    # ... and the flat gradient is those views, in the order weights then biases
    assert torch.equal(flat.grad, torch.cat([t.reshape(-1) for t in got[0::2] + got[1::2]]))


def test_flat_params_views_follow_updates_of_the_flat_buffer():
    weights, biases = _layers(10, dims=(5, 7, 7, 7, 2), batch=(3,))
    flat = FlatParams(list(weights) + list(biases))
    for view, original in zip(flat.params, list(weights) + list(biases)):
        assert torch.equal(view, original) and view.shape == original.shape
    flat.data.add_(1.0)  # an optimiser step on the flat buffer...
    assert torch.equal(flat.params[1], weights[1].detach() + 1.0)  # ...shows through the views
    # Equal-shaped neighbours share one view: layers 1 and 2 (7 x 7) stack into one group.
    flat.grad.copy_(torch.arange(flat.grad.numel(), dtype=flat.grad.dtype))
    groups = flat.grad_groups(0, 4)
    assert [tuple(g.shape) for g in groups] == [(1, 3, 7, 5), (2, 3, 7, 7), (1, 3, 2, 7)]
    assert torch.equal(groups[1][1], flat.grads[2])
