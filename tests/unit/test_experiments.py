"""Every experiment file is a complete claim that composes, validates and declares its verdict."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from actloss_bench.config.paths import CONF_DIR, EXPERIMENTS_DIR, experiment_names
from actloss_bench.config.schema import apply_arm, register_schema, validate
from actloss_bench.report.margins import rule_margin

NAMES = experiment_names()
REQUIRED = {"mse_collapse", "sigmoid_vanishing", "dying_relu", "numerical_instability",
            "softmax_before_ce", "outliers_regression", "imbalanced_weighting",
            "no_nonlinearity", "weight_decay_calibration", "init_mismatch", "mae_oscillation",
            "shape_mismatch", "kl_vs_soft_ce", "tanh_vs_sigmoid"}


def test_every_documented_claim_has_an_experiment():
    assert REQUIRED <= set(NAMES)


def _sweep(name):
    raw = OmegaConf.load(EXPERIMENTS_DIR / f"{name}.yaml")
    return {key: [v.strip() for v in str(values).split(",")]
            for key, values in raw.hydra.sweeper.params.items()}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_experiment_composes_for_every_swept_value(name, profile):
    register_schema()
    sweep = _sweep(name)
    assert "seed" not in sweep, "seeds are a population (seeds: N), not a sweep axis"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for key, values in sweep.items():
            for value in values:
                cfg = compose("config", overrides=[f"experiment={name}", f"profile={profile}",
                                                   f"{key}={value}"])
                OmegaConf.resolve(cfg)
                apply_arm(cfg)
                validate(cfg)
    assert cfg.claim.name == name and cfg.tracking.experiment == name
    assert cfg.claim.text and cfg.claim.source
    assert set(cfg.profiles) == {"quick", "full"}
    assert cfg.seeds >= (10 if profile == "quick" else 20), "the protocol's seeds per cell"
    lr_is_a_condition = "optimizer.lr" in sweep
    if not lr_is_a_condition:  # the protocol: the lr tuned per arm on a log grid of >= 5 points
        assert cfg.tune.lr_factors is not None and len(cfg.tune.lr_factors) >= 5
    else:
        assert cfg.tune.lr_factors is None


@pytest.mark.parametrize("name", NAMES)
def test_verdict_rules_name_swept_values(name):
    raw = OmegaConf.to_container(OmegaConf.load(EXPERIMENTS_DIR / f"{name}.yaml"), resolve=False)
    rules = raw["claim"]["verdict"]["rules"]
    assert rules
    sweep = _sweep(name)
    for arm in (raw.get("arms") or {}).values():  # a value an arm sets counts as swept
        for key, value in arm.items():
            sweep.setdefault(key, []).append(str(value))
    for rule in rules:
        assert rule["claim"] in ("worse", "equivalent", "best")
        for side in ("a", "b", "where"):
            filters = rule.get(side) or {}
            for filt in filters if isinstance(filters, list) else [filters]:
                for key, value in filt.items():
                    for v in value if isinstance(value, list) else [value]:
                        if key in sweep:
                            assert str(v) in sweep[key], f"{name}: {key}={v} never swept"
        for key in rule.get("condition") or []:
            assert key in sweep, f"{name}: condition {key} is not a sweep axis"
        for control in rule.get("controls") or []:
            assert control.get("expect", "absent") in ("absent", "present") and control["why"]
            for key, value in control.items():
                if key not in ("expect", "why"):
                    assert key in (rule.get("condition") or []), f"{name}: control on {key}"
                    assert str(value) in sweep[key], f"{name}: control {key}={value} never swept"
        rule_margin(rule)  # a margin from its family, or the claim's own number with its reason


def test_a_source_that_credits_a_guide_quotes_it():
    from actloss_bench.report.claims import GUIDES, experiment_sources, unquoted_guides

    quoted = 0
    for row in experiment_sources():
        assert not unquoted_guides(row["source"]), f"{row['name']}: a guide named, not quoted"
        assert set(row["guides"]) <= set(GUIDES), f"{row['name']}: not one of the five guides"
        quoted += bool(row["guides"])
    assert quoted >= 5


def test_the_claims_page_lists_every_experiment_and_the_untestable_rules():
    from actloss_bench.report.claims import UNTESTABLE, claims_page

    page = claims_page({"mse_collapse": "reproduced"})
    for name in NAMES:
        assert f"[{name}](../results/{name}/README.md)" in page
    assert "| [mse_collapse](../results/mse_collapse/README.md) | reproduced |" in page
    assert page.count("\n| `") >= len(UNTESTABLE)
