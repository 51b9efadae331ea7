"""The fused optimisers update parameters exactly as torch.optim does with fused=True."""

import pytest
import torch
from omegaconf import OmegaConf

from actloss_bench.optim import FusedAdam, FusedSGD, build_optimizer, clip_grad_norm_


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g)),
            torch.nn.Parameter(torch.randn(4, generator=g))]


def _grads(step):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(4, 3, generator=g), torch.randn(4, generator=g)]


CASES = [
    ("adam", dict(lr=1e-2, weight_decay=0.0), lambda p: torch.optim.Adam(p, lr=1e-2, fused=True)),
    ("adam", dict(lr=1e-2, weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1, fused=True)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1),
     lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, fused=True)),
    ("sgd", dict(lr=0.1, weight_decay=0.0, momentum=0.0),
     lambda p: torch.optim.SGD(p, lr=0.1, fused=True)),
    ("sgd", dict(lr=0.1, weight_decay=0.01, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.01, momentum=0.9, fused=True)),
]


@pytest.mark.parametrize("name,kwargs,reference", CASES)
def test_same_updates_as_torch_optim(name, kwargs, reference):
    ours, theirs = _params(), _params()
    cfg = OmegaConf.create({"name": name, "momentum": 0.0, **kwargs})
    opt = build_optimizer(cfg, ours)
    ref = reference(theirs)
    for step in range(5):
        grads = _grads(step)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        ref.step()
        opt.step([g.clone() for g in grads])
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), (name, kwargs, step)


def test_build_optimizer_types_and_unknown_name():
    assert isinstance(build_optimizer(OmegaConf.create(
        {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0}), _params()),
        FusedAdam)
    assert isinstance(build_optimizer(OmegaConf.create(
        {"name": "sgd", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0}), _params()), FusedSGD)
    with pytest.raises(KeyError):
        build_optimizer(OmegaConf.create({"name": "rmsprop", "lr": 1e-3}), _params())


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_matches_torch(max_norm):
    ours, theirs = _grads(0), _grads(0)
    params = _params()
    for p, g in zip(params, theirs):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    clip_grad_norm_(ours, max_norm)
    for a, p in zip(ours, params):
        assert torch.equal(a, p.grad)
    if max_norm < 1:
        total = torch.linalg.vector_norm(torch.stack([g.norm() for g in ours]))
        assert float(total) == pytest.approx(max_norm, rel=1e-4)
