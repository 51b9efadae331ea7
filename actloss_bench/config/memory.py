"""A job's memory, estimated from its config before anything is allocated.

A model too deep for the machine used to grow until the kernel killed it (about 15 GB resident
before it died), and a huge ``task.n_samples`` ended in a NumPy traceback. :func:`check_fits`
refuses such a config in one line naming the estimate and the limit. The estimate counts what
:func:`actloss_bench.engine.training.train_population` holds at its peak, in float32 unless noted:

- data: the generated float64 arrays while one seed's split is standardised, every seed's
  float32 splits, the population's stacked copy and each epoch's shuffled training copy;
- model: nine copies of each of the K models' parameters: the ``nn.Linear`` it is initialised
  from and the stacked copy, the weight, its gradient, Adam's two moments, the optimiser's
  foreach temporaries, and the concatenation of parameter groups in each forward pass;
- activations: a training batch's saved activations and their gradients (about three tensors
  of (K, batch, width) per hidden layer), and an evaluation of a whole split with every hidden
  layer kept for the dead-unit and saturation diagnostics (two tensors per layer, and four
  more for the output and the diagnostics' temporaries).

The limit is ``trainer.memory_limit_gb`` when set, else the memory Linux says is available now
(MemAvailable). A test compares the estimate with the peak resident memory of real runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from actloss_bench.engine import protocol
from actloss_bench.config.schema import ConfigError

GB = 1e9
FLOAT = 4
DOUBLE = 8


@dataclass(frozen=True)
class Estimate:
    data: float  # bytes
    model: float
    activations: float
    models: int

    @property
    def total(self) -> float:
        return self.data + self.model + self.activations


def n_models(cfg) -> int:
    """The most models the job trains at once (the protocol's tuning or evaluation population)."""
    return protocol.largest_population(cfg)


def parameter_count(n_in: int, n_out: int, depth: int, width: int) -> int:
    if depth == 0:
        return n_in * n_out + n_out
    return (n_in * width + width) + (depth - 1) * (width * width + width) + width * n_out + n_out


def task_sizes(task_cfg) -> Tuple[int, int, int]:
    """(samples, features, outputs) of a task: a real dataset's own, else the config's."""
    from actloss_bench.engine.tasks import TASKS

    task = TASKS.get(task_cfg.name)
    n, features = task.shape if task is not None and task.shape else (task_cfg.n_samples,
                                                                       task_cfg.n_features)
    classes = task.n_classes if task is not None and task.n_classes else task_cfg.n_classes
    return n, features, max(1, classes)


def estimate(cfg) -> Estimate:
    """Peak bytes of one job (``cfg`` composed)."""
    t, m = cfg.task, cfg.model
    n, features, outputs = task_sizes(t)
    K, seeds = n_models(cfg), cfg.seeds
    n_train = n * (1 - t.val_fraction - t.test_fraction)
    n_eval = n * max(t.val_fraction, t.test_fraction)
    row = (features + 1) * FLOAT
    data = (4 * n * (features + 1) * DOUBLE  # one seed's generation, split and standardising
            + seeds * n * row  # every seed's splits
            + K * n * row  # the population's stacked splits
            + K * n_train * row)  # an epoch's shuffled training copy
    model = 9 * FLOAT * K * parameter_count(features, outputs, m.depth, m.width)
    width, layers = max(m.width, outputs), max(m.depth, 1)
    batch = min(cfg.trainer.batch_size, n_train)
    activations = FLOAT * K * width * (3 * batch * layers + n_eval * (2 * layers + 4))
    return Estimate(data=data, model=model, activations=activations, models=K)


def available_bytes() -> Optional[float]:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def limit(cfg) -> Tuple[Optional[float], str]:
    """The byte limit and where it comes from."""
    if cfg.trainer.memory_limit_gb is not None:
        return cfg.trainer.memory_limit_gb * GB, "trainer.memory_limit_gb"
    return available_bytes(), "available memory (MemAvailable)"


def _gb(n_bytes: float) -> str:
    gb = n_bytes / GB
    return f"{gb:,.1f}" if gb >= 0.1 else f"{gb:.2g}"


def check_fits(cfg) -> Estimate:
    """Raise ConfigError (one line) when the job's estimate exceeds the limit."""
    est = estimate(cfg)
    n, features, _ = task_sizes(cfg.task)
    cap, source = limit(cfg)
    if cap is not None and est.total > cap:
        raise ConfigError(
            f"config too big for this machine: about {_gb(est.total)} GB needed "
            f"(data {_gb(est.data)}, model {_gb(est.model)}, activations "
            f"{_gb(est.activations)}; {est.models} model(s) of depth {cfg.model.depth} x "
            f"width {cfg.model.width}, {n} samples x {features} features), limit "
            f"{_gb(cap)} GB ({source}); reduce model.depth, model.width, task.n_samples, "
            f"task.n_features or seeds")
    return est
