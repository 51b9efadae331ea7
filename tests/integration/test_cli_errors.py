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


def test_single_invalid_run_exits_non_zero_with_reason_and_so_does_its_rerun(tmp_path):
    args = ("actloss-bench", "loss=ce", "task=regression", "task.n_samples=100",
            f"tracking.uri=sqlite:///{tmp_path}/m.db")
    for attempt in range(2):  # a skipped run never counts as finished
        proc = run_cli(*args, check=False)
        assert proc.returncode == 1, attempt
        assert "ce needs class labels; regression targets are continuous" in proc.stderr


@pytest.mark.parametrize("args,expected", [
    (["tracking.uri=foo://x"], "actloss-bench: error: tracking.uri=foo://x is not a tracking "
                               "store; use sqlite:///path/mlflow.db"),
    (["trainer.device=cuda"], "actloss-bench: error: trainer.device=cuda is not available"),
    (["tracking.uri=sqlite:////etc/passwd/mlflow.db"],
     "actloss-bench: error: cannot create results folder /etc/passwd: /etc/passwd is a file, "
     "not a folder"),
    (["experiment=shape_mismatch"], "actloss-bench: error: experiment=shape_mismatch is a sweep "
                                    "of its arms and conditions; add -m"),
])
def test_everyday_mistakes_are_one_line_and_log_nothing(tmp_path, args, expected):
    import torch

    if "trainer.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "m.db"
    extra = [] if any(a.startswith("tracking.uri") for a in args) else [
        f"tracking.uri=sqlite:///{store}"]
    proc = run_cli("actloss-bench", *args, *extra, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not store.exists() or "[ok]" not in proc.stdout
    assert "[ok]" not in proc.stdout and "[failed]" not in proc.stdout


def test_the_report_refuses_a_bad_uri_in_one_line():
    proc = run_cli("actloss-report", "shape_mismatch", "--uri", "foo://x", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "actloss-report: error: --uri foo://x is not a tracking URI; use sqlite:///path/mlflow.db,"
        " http://host:port or a database URL")


def test_mlflow_info_lines_are_quiet_on_a_new_store(tmp_path):
    proc = run_cli("actloss-bench", "trainer.epochs=1", "task.n_samples=100",
                   f"tracking.uri=sqlite:///{tmp_path}/m.db")
    assert "INFO mlflow" not in proc.stderr


def test_unreachable_server_is_one_line_before_training():
    proc = run_cli("actloss-bench", "tracking.uri=http://127.0.0.1:9", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tracking server http://127.0.0.1:9 is unreachable" in lines[0]
    assert "[ok]" not in proc.stdout
