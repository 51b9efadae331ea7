import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from actloss_bench.config.paths import CONF_DIR
from actloss_bench.config.schema import register_schema

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_cli(*args, cwd=None, timeout=300, env=None, check=True):
    """Run a console script of the project (a real process, as a user would)."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def child_runs(uri, experiment="actloss_bench"):
    """A store's client and the runs of ``experiment`` under a parent (the jobs of sweeps)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return client, [r for r in runs if r.data.tags.get("mlflow.parentRunId")]


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite tracking URI in a temporary folder."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def small():
    """Overrides that make a job take well under a second."""
    return ["task.n_samples=300", "trainer.epochs=3", "model.width=16"]


@pytest.fixture(scope="module")
def make_cfg():
    """Compose a small config (400 samples, 4 epochs, width 16) with extra overrides."""
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *o: compose("config", overrides=["task.n_samples=400", "trainer.epochs=4",
                                                       "model.width=16", *o])


def require_system(what: str, missing: list):
    """Skip a test whose Debian packages are not installed here, unless CI says they must be
    (``.ci/run`` installs them and sets ACTLOSS_REQUIRE_SYSTEM=1): then it fails."""
    if missing:
        message = f"{what} not installed ({', '.join(missing)} missing)"
        if os.environ.get("ACTLOSS_REQUIRE_SYSTEM") == "1":
            pytest.fail(message)
        pytest.skip(message)
