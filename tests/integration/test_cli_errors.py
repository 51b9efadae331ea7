"""Bad input gets one clear line naming the key and what is allowed."""

import pytest

from actloss_bench.config.preflight import check_overrides
from actloss_bench.config.schema import ConfigError
from conftest import run_cli


@pytest.mark.parametrize("override,expected", [
    ("activation=swish", "activation='swish' is not an option; choose one of: elu, gelu"),
    ("activation=relu,swish", "activation='swish' is not an option"),
    ("loss=cross_entropy", "loss='cross_entropy' is not an option"),
    ("model.width=-3", "model.width=-3 is not allowed; it must be an integer >= 1"),
    ("optimizer.lr=0", "optimizer.lr=0.0 is not allowed; it must be > 0"),
    ("optimizer.lr=0.1,-1", "optimizer.lr=-1.0 is not allowed"),
    ("model.init=he", "model.init='he' is not allowed; choose one of: default, kaiming"),
    ("model.widht=3", "widht"),
    ("model.width=abc", "model.width"),
    ("task.minority_fraction=0.7", "task.minority_fraction=0.7 is not allowed"),
    ("seeds=0", "seeds=0 is not allowed; it must be an integer >= 1"),
    ("tune.lr_factors=[0,1]", "tune.lr_factors=[0.0, 1.0] is not allowed; it must be a list of "
                              "numbers > 0, or null"),
    ("tune.metric=test/accuracy", "tune.metric='test/accuracy' is not allowed; it must be auto "
                                  "or a validation metric"),
])
def test_bad_override_is_one_line(override, expected):
    with pytest.raises(ConfigError) as info:
        check_overrides([override])
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_good_overrides_pass():
    check_overrides(["activation=relu,tanh", "optimizer.lr=0.01", "task=moons", "seed=0,1,2",
                     "seeds=16", "tune.lr_factors=[0.1,1,10]"])


def test_cli_prints_one_line_and_fails_before_training(tmp_path):
    proc = run_cli("actloss-bench", "model.width=-1", f"tracking.uri=sqlite:///{tmp_path}/m.db",
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("actloss-bench: error: model.width=-1 is not allowed; "
                                   "it must be an integer >= 1")
    assert not (tmp_path / "m.db").exists()


def test_single_invalid_run_exits_non_zero_with_reason(tmp_path):
    proc = run_cli("actloss-bench", "loss=ce", "task=regression", "task.n_samples=100",
                   f"tracking.uri=sqlite:///{tmp_path}/m.db", check=False)
    assert proc.returncode == 1
    assert "ce needs class labels; regression targets are continuous" in proc.stderr


def test_unreachable_server_is_one_line_before_training():
    proc = run_cli("actloss-bench", "tracking.uri=http://127.0.0.1:9", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tracking server http://127.0.0.1:9 is unreachable" in lines[0]
    assert "[ok]" not in proc.stdout
