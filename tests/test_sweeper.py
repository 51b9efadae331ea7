"""The default sweeper is Hydra's basic sweeper composing each job once."""

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from actloss_bench.paths import CONF_DIR
from actloss_bench.schema import register_schema
from hydra_plugins.actloss_sweeper.actloss_sweeper import ActlossSweeper


def test_actloss_sweeper_is_the_default():
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == (
        "hydra_plugins.actloss_sweeper.actloss_sweeper.ActlossSweeper")


def test_only_the_first_job_of_a_batch_is_composed_up_front(monkeypatch):
    seen = []
    base = ActlossSweeper.__mro__[1]  # Hydra's plugin scan may have re-imported basic_sweeper
    assert base.__name__ == BasicSweeper.__name__
    monkeypatch.setattr(base, "validate_batch_is_legal",
                        lambda self, batch: seen.append(list(batch)))
    sweeper = object.__new__(ActlossSweeper)  # no launcher or config needed for this method
    sweeper.validate_batch_is_legal([["seed=0"], ["seed=1"], ["seed=2"]])
    assert seen == [[["seed=0"]]]
