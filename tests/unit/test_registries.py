"""Each registry is tied to its config folder, and every config composes against the schema."""


import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from actloss_bench.engine.activations import ACTIVATIONS, HEADS
from actloss_bench.engine.losses import LOSSES
from actloss_bench.config.paths import CONF_DIR, EXPERIMENTS_DIR
from actloss_bench.config.schema import OPTIMIZERS, register_schema, validate
from actloss_bench.engine.tasks import TASKS

REGISTRIES = {"activation": ACTIVATIONS, "head": HEADS, "loss": LOSSES, "task": TASKS,
              "optimizer": dict.fromkeys(OPTIMIZERS)}
DESIGN_NAMES = {
    "activation": {"identity", "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
                   "softplus", "sigmoid", "tanh"},
    "head": {"linear", "sigmoid", "softmax", "log_softmax"},
    "loss": {"mse", "mae", "huber", "bce", "bce_with_logits", "ce", "nll", "focal", "kl_div",
             "multi_margin"},
    "task": {"regression", "binary", "multiclass", "imbalanced", "moons", "circles", "xor",
             "spirals"},
}


def options(group):
    return {p.stem for p in (CONF_DIR / group).glob("*.yaml")}


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_registry_matches_config_folder(group):
    assert options(group) == set(REGISTRIES[group])


@pytest.mark.parametrize("group", sorted(DESIGN_NAMES))
def test_design_names_are_offered(group):
    assert DESIGN_NAMES[group] <= options(group)


def test_experiment_group_is_the_experiments_folder():
    assert (CONF_DIR / "experiment").resolve() == EXPERIMENTS_DIR.resolve()


def _all_overrides():
    for group in ("task", "activation", "head", "loss", "model", "optimizer", "trainer",
                  "tracking"):
        for name in sorted(options(group)):
            yield f"{group}={name}"


@pytest.fixture(scope="module")
def composer():
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda overrides: compose("config", overrides=overrides)


@pytest.mark.parametrize("override", list(_all_overrides()))
def test_every_option_composes_and_validates(composer, override):
    cfg = composer([override])
    OmegaConf.resolve(cfg)
    validate(cfg)
    group, name = override.split("=")
    if "name" in cfg[group]:
        assert cfg[group].name == name
