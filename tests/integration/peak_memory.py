"""Run by tests/test_memory.py in a fresh process: train one population as the overrides say
and print the peak resident memory the training added, beside the estimate, as JSON."""

import json
import resource
import sys

from hydra import compose, initialize_config_dir

from actloss_bench.engine import protocol
from actloss_bench.config.memory import estimate
from actloss_bench.config.paths import CONF_DIR
from actloss_bench.config.schema import register_schema
from actloss_bench.engine.training import train_population


def resident_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


if __name__ == "__main__":
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=sys.argv[1:])
    before = resident_bytes()
    # The protocol's largest population: the tuning grid beside the default-lr evaluation seeds.
    grid = protocol.learning_rates(cfg)
    tuning = protocol.tuning_members(cfg, grid) if protocol.is_tuned(cfg) else []
    members = tuning + protocol.evaluation_members(cfg, None)
    assert len(members) == protocol.largest_population(cfg)
    train_population(cfg, members)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"measured": peak - before, "estimate": estimate(cfg).total}))
