"""Losses against references: torch's own modules, scikit-learn, or the formula by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from sklearn.utils.class_weight import compute_class_weight

from actloss_bench.engine.losses import (balanced_class_weights, encode_targets, make_loss,
                                  per_sample_loss)
from actloss_bench.config.schema import LossConfig


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


def test_balanced_weights_match_sklearn_per_model():
    y = torch.stack([torch.tensor([0] * 90 + [1] * 10), torch.tensor([0] * 50 + [1] * 50)])
    for row, weights in zip(y, balanced_class_weights(y, 2)):
        ref = compute_class_weight("balanced", classes=np.array([0, 1]), y=row.numpy())
        np.testing.assert_allclose(weights.numpy(), ref, rtol=1e-6)


def test_weighted_mean_equals_torch_weighted_ce_for_each_model():
    # Two models with their own labels (so their own class weights), stacked as (K, N, C).
    y = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 2]])
    logits = torch.randn(2, 6, 3)
    loss = make_loss(cfg("ce", class_weight="balanced"), kind="multiclass", out_dim=3,
                     n_classes=3, y_train=y)
    got = loss(logits, y, y)
    for k in range(2):
        ref = F.cross_entropy(logits[k], y[k], weight=balanced_class_weights(y[k:k + 1], 3)[0])
        torch.testing.assert_close(got[k], ref)


def test_balanced_bce_with_logits_uses_each_models_pos_weight():
    y = torch.stack([torch.tensor([0] * 8 + [1] * 2), torch.tensor([0] * 5 + [1] * 5)])
    z = torch.randn(2, 10, 1)
    loss = make_loss(cfg("bce_with_logits", class_weight="balanced"), kind="binary", out_dim=1,
                     n_classes=2, y_train=y)
    got = loss(z, y[..., None].float(), y)
    for k, pos_weight in enumerate([4.0, 1.0]):
        ref = F.binary_cross_entropy_with_logits(z[k], y[k, :, None].float(),
                                                 pos_weight=torch.tensor([pos_weight]))
        torch.testing.assert_close(got[k], ref)


@pytest.mark.parametrize("name,out_dim", [("ce", 3), ("nll", 3), ("multi_margin", 3),
                                          ("focal", 3), ("naive_ce", 3), ("mse", 1),
                                          ("mse_shape_mismatch", 1), ("kl_div", 3)])
def test_a_population_loss_is_each_models_own_loss(name, out_dim):
    """(K, N, O) outputs give each model the loss it would get alone."""
    kind = "regression" if name.startswith("mse") else "multiclass"
    y = (torch.randn(3, 8) if kind == "regression" else torch.randint(0, 3, (3, 8)))
    target = encode_targets(y, kind=kind, loss=name, out_dim=out_dim, n_classes=3)
    out = torch.randn(3, 8, out_dim)
    if name in ("nll", "kl_div"):
        out = F.log_softmax(out, -1)
    loss = make_loss(cfg(name), kind=kind, out_dim=out_dim, n_classes=3, y_train=y)
    together = loss(out, target, y)
    for k in range(3):
        alone = loss(out[k:k + 1], target[k:k + 1], y[k:k + 1])
        torch.testing.assert_close(together[k], alone[0])


def test_one_hot_cross_entropy_is_index_cross_entropy_with_the_same_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 50, 4, requires_grad=True)
    labels = torch.randint(0, 4, (2, 50))
    grads = []
    for name in ("ce", "ce_onehot"):
        cfg = OmegaConf.create({"name": name, "label_smoothing": 0.0})
        target = encode_targets(labels, kind="multiclass", loss=name, out_dim=4, n_classes=4)
        loss = per_sample_loss(cfg, None)(logits, target)
        grads.append((loss.mean(), *torch.autograd.grad(loss.mean(), logits)))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-7)


@pytest.mark.parametrize("out_dim", [1, 3])
def test_the_zero_one_loss_is_the_error_rate_and_has_no_gradient(out_dim):
    torch.manual_seed(1)
    logits = torch.randn(1, 40, out_dim, requires_grad=True)
    labels = torch.randint(0, max(out_dim, 2), (1, 40))
    kind = "binary" if out_dim == 1 else "multiclass"
    target = encode_targets(labels, kind=kind, loss="zero_one", out_dim=out_dim,
                            n_classes=max(out_dim, 2))
    loss = per_sample_loss(OmegaConf.create({"name": "zero_one"}), None)(logits, target).mean()
    predicted = (logits[..., 0] > 0).long() if out_dim == 1 else logits.argmax(-1)
    assert loss.item() == pytest.approx((predicted != labels).float().mean().item())
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.count_nonzero(grad) == 0


def test_gaussian_nll_is_torchs_with_a_softplus_variance():
    torch.manual_seed(0)
    out, target = torch.randn(2, 30, 2), torch.randn(2, 30, 1)
    fn = per_sample_loss(OmegaConf.structured(LossConfig(name="gaussian_nll")), None)
    expected = torch.nn.GaussianNLLLoss(full=True, reduction="none")(
        out[..., :1], target, torch.nn.functional.softplus(out[..., 1:]))[..., 0]
    torch.testing.assert_close(fn(out, target), expected)


def test_multilabel_targets_and_sigmoid_focal_loss_per_label():
    y = torch.tensor([[[1, 0, 1], [0, 0, 0]]])  # (K=1, N=2, labels=3)
    target = encode_targets(y, kind="multilabel", loss="focal", out_dim=3, n_classes=3)
    assert target.dtype == torch.float32 and target.shape == (1, 2, 3)
    out = torch.randn(1, 2, 3)
    fn = per_sample_loss(OmegaConf.structured(LossConfig(name="focal", gamma=0.0)), None)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")
    torch.testing.assert_close(fn(out, target), bce.mean(-1))  # gamma 0: BCE per label


def test_multilabel_balanced_weighting_is_each_labels_pos_weight():
    y = torch.tensor([[[1, 0], [0, 0], [0, 1], [0, 1]]])  # label 0: 1 of 4; label 1: 2 of 4
    loss = make_loss(OmegaConf.structured(LossConfig(name="bce_with_logits",
                                                     class_weight="balanced")),
                     kind="multilabel", out_dim=2, n_classes=2, y_train=y)
    out = torch.zeros(1, 4, 2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out, y.float(), pos_weight=torch.tensor([3.0, 1.0]), reduction="none").mean(-1).mean(-1)
    torch.testing.assert_close(loss(out, y.float()), expected)
