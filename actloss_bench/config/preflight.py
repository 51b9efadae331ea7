"""Command-line checks that turn a bad override into one line, before Hydra starts any job.

Hydra's own messages for a missing option or a mistyped value span many lines; these checks
give one line naming the key and what is allowed, for every value of a sweep.
"""

from __future__ import annotations

from typing import Dict, List

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from actloss_bench.config.memory import check_fits
from actloss_bench.config.paths import CONF_DIR
from actloss_bench.config.schema import ConfigError, apply_arm, register_schema, validate

GROUPS = ("task", "activation", "head", "loss", "model", "optimizer", "trainer", "tracking",
          "experiment")


def group_options(group: str) -> List[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _values(override) -> List[str]:
    """The string values an override stands for (each element of a sweep)."""
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _one_line(e: BaseException) -> str:
    while e.__cause__ is not None and not isinstance(e, OmegaConfBaseException):
        e = e.__cause__
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    key = getattr(e, "full_key", None)
    return f"{key}: {msg}" if key and key not in msg else msg


def check_overrides(args: List[str]) -> None:
    """Raise ConfigError (one line) for the first bad override among ``args``."""
    parsed = OverridesParser.create().parse_overrides(
        [a for a in args if not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))])
    sweeps: Dict[str, List[str]] = {}
    fixed: List[str] = []
    for o in parsed:
        key = o.key_or_group
        values = _values(o)
        if key in GROUPS and o.package is None:
            allowed = group_options(key)
            for v in values:
                if v not in allowed and not (key == "experiment" and v == "null"):
                    raise ConfigError(f"{key}={v!r} is not an option; choose one of: "
                                      f"{', '.join(allowed)}")
        if o.is_sweep_override():
            sweeps[o.input_line.split("=", 1)[0]] = values
        else:
            fixed.append(o.input_line)
    # Compose every value of every swept key once (others at their first value), and validate;
    # then every numeric swept key at its largest value together: the sweep's biggest job, for
    # the memory check (sizes only grow the estimate).
    first = {k: v[0] for k, v in sweeps.items()}
    combos = [first] + [{**first, k: v} for k, vs in sweeps.items() for v in vs[1:]]
    largest = {k: max(vs, key=float) if all(_is_number(v) for v in vs) else vs[0]
               for k, vs in sweeps.items()}
    if largest != first:
        combos.append(largest)
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for combo in combos:
                overrides = fixed + [f"{k}={v}" for k, v in combo.items()]
                try:
                    cfg = compose("config", overrides=overrides)
                    OmegaConf.resolve(cfg)
                except ConfigError:
                    raise
                except Exception as e:  # Hydra/OmegaConf composition errors
                    raise ConfigError(_one_line(e)) from None
                apply_arm(cfg)
                validate(cfg)
                check_fits(cfg)
    finally:
        GlobalHydra.instance().clear()
