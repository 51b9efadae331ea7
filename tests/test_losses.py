"""Losses against references: torch's own modules, scikit-learn, or the formula by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from sklearn.utils.class_weight import compute_class_weight

from actloss_bench.losses import (balanced_class_weights, encode_targets, make_loss,
                                  per_sample_loss)
from actloss_bench.schema import LossConfig


def cfg(name, **kw):
    return OmegaConf.structured(LossConfig(name=name, **kw))


def test_focal_with_gamma_zero_is_cross_entropy():
    z = torch.randn(8, 1)
    t = torch.randint(0, 2, (8, 1)).float()
    focal = per_sample_loss(cfg("focal", gamma=0.0), None)
    torch.testing.assert_close(focal(z, t).mean(), F.binary_cross_entropy_with_logits(z, t))
    z3, y3 = torch.randn(8, 3), torch.randint(0, 3, (8,))
    torch.testing.assert_close(focal(z3, y3).mean(), F.cross_entropy(z3, y3))


def test_focal_down_weights_easy_examples_by_formula():
    z, t = torch.tensor([[3.0]]), torch.tensor([[1.0]])
    p = torch.sigmoid(z)
    expected = -(1 - p) ** 2 * torch.log(p)
    torch.testing.assert_close(per_sample_loss(cfg("focal"), None)(z, t), expected[:, 0])


def test_naive_forms_agree_on_small_logits_and_blow_up_on_large():
    z = torch.tensor([[0.5], [-1.0]])
    t = torch.tensor([[1.0], [0.0]])
    naive = per_sample_loss(cfg("naive_bce"), None)
    torch.testing.assert_close(naive(z, t),
                               F.binary_cross_entropy_with_logits(z, t, reduction="none")[:, 0])
    assert torch.isinf(naive(torch.tensor([[200.0]]), torch.tensor([[0.0]]))).all()
    naive_ce = per_sample_loss(cfg("naive_ce"), None)
    logits, y = torch.tensor([[0.1, 0.3, -0.2]]), torch.tensor([2])
    torch.testing.assert_close(naive_ce(logits, y), F.cross_entropy(logits, y, reduction="none"))
    assert torch.isinf(naive_ce(torch.tensor([[0.0, 500.0]]), torch.tensor([0]))).all()


def test_shape_mismatch_broadcasts_to_every_pair():
    pred, y = torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 2.0])
    got = per_sample_loss(cfg("mse_shape_mismatch"), None)(pred, y).mean()
    by_hand = np.mean([(p - t) ** 2 for p in (1.0, 3.0) for t in (1.0, 2.0)])
    assert float(got) == pytest.approx(by_hand)


def test_kl_div_on_one_hot_equals_ce_and_differs_by_entropy_when_smoothed():
    logits, y = torch.randn(6, 3), torch.randint(0, 3, (6,))
    logp = F.log_softmax(logits, 1)
    kl = per_sample_loss(cfg("kl_div"), None)
    onehot = encode_targets(y, kind="multiclass", loss="kl_div", out_dim=3, n_classes=3)
    torch.testing.assert_close(kl(logp, onehot), F.cross_entropy(logits, y, reduction="none"))
    soft = encode_targets(y, kind="multiclass", loss="kl_div", out_dim=3, n_classes=3,
                          label_smoothing=0.3)
    ce_soft = F.cross_entropy(logits, soft, reduction="none")
    entropy = -(soft * soft.log()).sum(1)
    torch.testing.assert_close(ce_soft - kl(logp, soft), entropy)


def test_balanced_weights_match_sklearn():
    y = torch.tensor([0] * 90 + [1] * 10)
    ref = compute_class_weight("balanced", classes=np.array([0, 1]), y=y.numpy())
    np.testing.assert_allclose(balanced_class_weights(y, 2).numpy(), ref, rtol=1e-6)


def test_weighted_mean_equals_torch_weighted_ce():
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    logits = torch.randn(6, 3)
    loss = make_loss(cfg("ce", class_weight="balanced"), kind="multiclass", out_dim=3,
                     n_classes=3, y_train=y)
    ref = F.cross_entropy(logits, y, weight=balanced_class_weights(y, 3))
    torch.testing.assert_close(loss(logits, y, y), ref)


def test_balanced_bce_with_logits_uses_pos_weight():
    y = torch.tensor([0] * 8 + [1] * 2)
    z = torch.randn(10, 1)
    loss = make_loss(cfg("bce_with_logits", class_weight="balanced"), kind="binary", out_dim=1,
                     n_classes=2, y_train=y)
    ref = F.binary_cross_entropy_with_logits(z, y[:, None].float(), pos_weight=torch.tensor([4.0]))
    torch.testing.assert_close(loss(z, y[:, None].float(), y), ref)


# --- closed-form output gradients: equal to autograd's bit for bit -----------------------------

def _targets(name, rows, k, gen):
    if name == "ce":
        return torch.randint(0, k, (rows,), generator=gen)
    if name == "mse":
        return torch.randn(rows, k, generator=gen)
    return torch.randint(0, 2, (rows, k), generator=gen).float()


@pytest.mark.parametrize("name,k", [("bce_with_logits", 1), ("bce_with_logits", 3), ("mse", 1),
                                    ("mse", 5), ("ce", 2), ("ce", 5)])
@pytest.mark.parametrize("seeds", [None, 4])
def test_closed_form_gradient_equals_autograd_bit_for_bit(name, k, seeds):
    from actloss_bench.backprop import output_grad
    from actloss_bench.losses import closed_form_gradient

    per_sample = per_sample_loss(cfg(name), None)
    gradient_of = closed_form_gradient(cfg(name), "linear")
    gen = torch.Generator().manual_seed(0)
    for trial in range(40):
        rows = [128, 96, 80, 33][trial % 4]  # full batches and the odd last one
        scale = 1 + 3 * (trial % 5)  # logits up to saturation
        if seeds is None:
            out = torch.randn(rows, k, generator=gen) * scale
            target = _targets(name, rows, k, gen)
            _, expected = output_grad(out, lambda o: per_sample(o, target).mean())
        else:
            out = torch.randn(seeds, rows, k, generator=gen) * scale
            target = _targets(name, seeds * rows, k, gen)
            _, expected = output_grad(
                out, lambda o: per_sample(o.flatten(0, 1), target).view(seeds, -1).mean(1))
        got = gradient_of(out.flatten(0, 1) if seeds else out, target, rows).view(out.shape)
        assert torch.equal(got, expected), (name, k, seeds, trial)


@pytest.mark.parametrize("name,head,options", [
    ("bce_with_logits", "sigmoid", {}),  # a head in between: autograd
    ("bce_with_logits", "linear", {"class_weight": "balanced"}),
    ("bce_with_logits", "linear", {"pos_weight": 3.0}),
    ("ce", "linear", {"label_smoothing": 0.1}),
    ("ce", "softmax", {}),
    ("huber", "linear", {}),  # no closed form written
    ("focal", "linear", {}),
])
def test_closed_form_gradient_is_not_used_where_it_would_differ(name, head, options):
    from actloss_bench.losses import closed_form_gradient

    assert closed_form_gradient(cfg(name, **options), head) is None
    if name in ("bce_with_logits", "ce"):  # the head or the option is what turned it off
        assert closed_form_gradient(cfg(name), "linear") is not None
