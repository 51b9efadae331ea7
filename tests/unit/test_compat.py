"""The compatibility matrix: every cell classified; invalid cells really cannot run."""

import pytest
import torch
from omegaconf import OmegaConf

from actloss_bench.engine.activations import HEADS, make_head
from actloss_bench.cli.matrix import main
from actloss_bench.engine.compat import (CANONICAL, INVALID, MISTAKE, classify, matrix_rows,
                                         output_dim)
from actloss_bench.engine.losses import LOSSES, encode_targets, per_sample_loss
from actloss_bench.config.schema import LossConfig
from actloss_bench.engine.tasks import KINDS

N_CLASSES = {"regression": 0, "binary": 2, "multiclass": 3, "multilabel": 4}


def _forward(kind, head, loss):
    torch.manual_seed(0)
    k = N_CLASSES[kind]
    out_dim = output_dim(kind, head, loss, k)
    raw = 3 * torch.randn(16, out_dim, requires_grad=True)
    y = (torch.randn(16) if kind == "regression" else
         (torch.rand(16, k) < 0.5).long() if kind == "multilabel" else torch.arange(16) % k)
    target = encode_targets(y, kind=kind, loss=loss, out_dim=out_dim, n_classes=k)
    fn = per_sample_loss(OmegaConf.structured(LossConfig(name=loss)), None)
    value = fn(make_head(head)(raw), target).mean()
    value.backward()
    return value


def test_every_cell_is_classified():
    rows = list(matrix_rows())
    assert len(rows) == len(KINDS) * len(HEADS) * len(LOSSES)
    assert {r[3] for r in rows} == {CANONICAL, MISTAKE, INVALID}
    assert all(r[4] for r in rows), "every cell states its reason"


@pytest.mark.parametrize("kind,head,loss", [r[:3] for r in matrix_rows() if r[3] != INVALID])
def test_runnable_cells_run(kind, head, loss):
    value = _forward(kind, head, loss)
    assert value.shape == ()


@pytest.mark.parametrize("kind,head,loss", [
    ("binary", "linear", "bce"), ("multiclass", "log_softmax", "bce"),
    ("regression", "linear", "ce"), ("regression", "linear", "nll"),
    ("multilabel", "linear", "ce"), ("binary", "tanh", "bce"),
])
def test_invalid_cells_fail_when_forced(kind, head, loss):
    with pytest.raises((RuntimeError, ValueError, IndexError)):
        if kind == "regression":  # class losses need integer labels
            fn = per_sample_loss(OmegaConf.structured(LossConfig(name=loss)), None)
            fn(make_head(head)(torch.randn(4, 1)), torch.randn(4))
        else:
            _forward(kind, head, loss)


def test_textbook_pairs_and_folklore_mistakes():
    assert classify("binary", "linear", "bce_with_logits").verdict == CANONICAL
    assert classify("multiclass", "linear", "ce").verdict == CANONICAL
    assert classify("multiclass", "log_softmax", "nll").verdict == CANONICAL
    assert classify("regression", "linear", "huber").verdict == CANONICAL
    assert classify("multiclass", "softmax", "ce").verdict == MISTAKE
    assert classify("binary", "sigmoid", "mse").verdict == MISTAKE
    assert classify("binary", "sigmoid", "bce").verdict == MISTAKE
    assert classify("regression", "linear", "ce").verdict == INVALID


def test_matrix_command_prints_filtered_table(capsys):
    main(["--kind", "regression", "--verdict", "invalid"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("kind")
    assert len(lines) > 1 and all("invalid" in line for line in lines[1:])


def test_multilabel_pairings_and_heads_that_fit_a_target_scaling():
    assert classify("multilabel", "linear", "bce_with_logits").verdict == CANONICAL
    assert classify("multilabel", "softmax", "bce").verdict == MISTAKE
    assert classify("multilabel", "linear", "ce_onehot").verdict == MISTAKE
    assert classify("multilabel", "linear", "nll").verdict == INVALID
    assert classify("regression", "linear", "gaussian_nll").verdict == CANONICAL
    assert classify("binary", "linear", "gaussian_nll").verdict == INVALID
    assert output_dim("regression", "linear", "gaussian_nll", 0) == 2
    assert output_dim("multilabel", "linear", "bce_with_logits", 5) == 5
    assert classify("regression", "sigmoid", "mse").verdict == MISTAKE
    assert classify("regression", "sigmoid", "mse", "unit").verdict == CANONICAL
    assert classify("regression", "tanh", "mse", "symmetric").verdict == CANONICAL
    assert classify("regression", "tanh", "mse", "unit").verdict == MISTAKE
