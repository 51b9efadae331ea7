"""Network diagnostics and the diagnosis detectors, on constructed cases with known answers."""

import math

import pytest
import torch

from actloss_bench.engine import diagnostics as d
from actloss_bench.engine.diagnoses import THRESHOLDS, diagnose


def test_dead_fraction_per_layer_and_overall():
    h1 = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 1.0]])  # units 0 and 2 dead
    h2 = torch.tensor([[0.0, 3.0], [1e-9, 0.0]])  # nobody dead: 1e-9 is not exactly 0
    got = d.dead_metrics([h1, h2])
    assert [got["dead/layer_0"], got["dead/layer_1"]] == [0.5, 0.0]
    assert got["dead/fraction"] == pytest.approx(2 / 6)
    assert d.dead_metrics([]) == {"dead/fraction": 0.0}


def test_a_unit_with_negative_or_nan_outputs_is_not_dead():
    # Unit 0: max exactly 0 but a negative output (e.g. leaky_relu); unit 1: a NaN output;
    # unit 2: all exactly 0 (dead, also as -0.0).
    h = torch.tensor([[0.0, float("nan"), 0.0], [-0.5, 0.0, -0.0]])
    assert d.dead_metrics([h]) == {"dead/fraction": 1 / 3, "dead/layer_0": 1 / 3}


def test_saturation_counts_flat_tails_only_for_sigmoid_and_tanh():
    s = torch.sigmoid(torch.tensor([[-10.0, 0.0, 10.0, 3.0]]))  # -10 and 10 in the tails
    assert d.saturation_fraction([s], "sigmoid") == pytest.approx(0.5)
    t = torch.tanh(torch.tensor([[-5.0, 0.1], [3.0, -1.0]]))  # |tanh| > 0.98 for |z| > 2.3
    assert d.saturation_fraction([t], "tanh") == pytest.approx(0.5)
    assert d.saturation_fraction([t], "relu") is None


def test_grad_norm_metrics():
    assert d.grad_norm_metrics([1e-4, 0.5, 2.0]) == {
        "grad_norm/layer_0": 1e-4, "grad_norm/layer_1": 0.5, "grad_norm/layer_2": 2.0,
        "grad_norm/ratio_first_last": 5e-5}


def test_network_metrics_of_stacked_models_equal_each_model_alone():
    torch.manual_seed(0)
    hidden = [torch.tanh(3 * torch.randn(3, 50, 8)), torch.relu(torch.randn(3, 50, 4) - 2)]
    hidden[1][1] = 0.0  # model 1: the whole second layer dead
    norms = torch.rand(2, 3)
    stacked = d.network_metrics(hidden, norms, "tanh")
    for s in range(3):
        alone = [h[s] for h in hidden]
        expected = {**d.dead_metrics(alone),
                    "saturation/fraction": d.saturation_fraction(alone, "tanh"),
                    **d.grad_norm_metrics(norms[:, s].tolist())}
        assert stacked[s] == expected
    assert stacked[1]["dead/layer_1"] == 1.0
    assert "saturation/fraction" not in d.network_metrics(hidden, norms, "relu")[0]


HEALTHY = {"pred_majority_fraction": 0.55, "data_majority_fraction": 0.5, "dead/fraction": 0.0,
           "grad_norm/ratio_first_last": 0.8, "ece": 0.02, "mean_confidence": 0.9,
           "accuracy": 0.9}


def test_healthy_run_has_no_diagnosis():
    assert diagnose(HEALTHY, status="ok") == []


@pytest.mark.parametrize("change,expected", [
    ({"pred_majority_fraction": 0.99}, ["collapsed"]),
    ({"pred_majority_fraction": 0.99, "data_majority_fraction": 0.95}, []),  # data that skewed
    ({"pred_majority_fraction": 1.0, "data_majority_fraction": 0.95}, ["collapsed"]),
    ({"dead/fraction": THRESHOLDS.dead_fraction}, ["dead_units"]),
    ({"grad_norm/ratio_first_last": 1e-4}, ["vanishing_gradients"]),
    ({"saturation/fraction": 0.7}, ["saturated"]),
    ({"ece": 0.2, "mean_confidence": 0.99, "accuracy": 0.79}, ["overconfident"]),
    ({"ece": 0.2, "mean_confidence": 0.6, "accuracy": 0.8}, ["underconfident"]),
    ({"grad_norm/ratio_first_last": math.nan}, []),
])
def test_each_detector_fires_on_its_case(change, expected):
    assert diagnose({**HEALTHY, **change}, status="ok") == expected


def test_diverged_and_regression_collapse():
    assert diagnose({}, status="diverged") == ["diverged"]
    assert diagnose({"pred_std_ratio": 0.01}, status="ok") == ["collapsed"]
    assert diagnose({"pred_std_ratio": 0.9}, status="ok") == []
