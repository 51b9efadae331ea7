"""Typed schemas behind the YAML config groups, and the checks that run before training.

Each dataclass is the schema of one config group (``conf/<group>/*.yaml``). They are stored in
Hydra's ConfigStore as ``actloss_schema`` and named first in ``conf/config.yaml``'s defaults list,
so an unknown key or a value of the wrong type fails at composition, naming the key.
Value ranges and option names are checked by :func:`validate`, which raises :class:`ConfigError`
with one line naming the key and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that is out of range or not one of the allowed options (one line)."""


@dataclass
class TaskConfig:
    name: str = MISSING
    n_samples: int = 2000
    n_features: int = 20
    noise: float = 0.1
    n_classes: int = 2
    minority_fraction: float = 0.5
    outlier_fraction: float = 0.0
    # Classification: the fraction of training and validation labels replaced by another class
    # (uniformly); the test split stays clean.
    label_noise: float = 0.0
    outlier_scale: float = 20.0
    class_sep: float = 1.0
    # Regression: how targets reach the model: standard (z-scored on the training split), none
    # (raw), unit ([0, 1] by the training range) or symmetric ([-1, 1]); metrics stay in
    # standardised units whatever the choice.
    target_scaling: str = "standard"
    # bounded_regression: the targets' range.
    target_low: float = 0.0
    target_high: float = 1.0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    # None: the data follow the run's top-level seed (each seed is a new draw of the data).
    data_seed: Optional[int] = None


@dataclass
class ActivationConfig:
    name: str = MISSING


@dataclass
class HeadConfig:
    name: str = MISSING


@dataclass
class LossConfig:
    name: str = MISSING
    # "none" or "balanced" (n / (K * count_c) from the training split), applied through the
    # loss's own mechanism: `weight` for ce/nll/multi_margin/bce, `pos_weight` for logits BCE.
    class_weight: str = "none"
    pos_weight: Optional[float] = None
    gamma: float = 2.0
    alpha: Optional[float] = None
    delta: float = 1.0
    label_smoothing: float = 0.0


@dataclass
class ModelConfig:
    depth: int = 2
    width: int = 64
    init: str = "default"
    init_scale: float = 1.0
    bias_init: Optional[float] = None


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 128
    grad_clip: Optional[float] = None
    device: str = "auto"
    # torch intra-op threads; tiny matrices run fastest on 1 (see benchmarks/README.md).
    threads: Optional[int] = 1
    # Also fit scikit-learn's LogisticRegression on the same split (test/logreg_accuracy).
    linear_baseline: bool = False
    # Refuse a job whose estimated memory exceeds this (GB); null: the memory available now.
    memory_limit_gb: Optional[float] = None


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///results/mlflow.db"
    experiment: str = "actloss_bench"
    # None: `mlartifacts/` beside a SQLite file; the server's own store for http URIs.
    artifact_root: Optional[str] = None
    # A figure per model run (plots/diagnostics.png); off by default: the report draws
    # per-cell and per-experiment figures instead.
    log_plots: bool = False
    # Buffered epoch metrics are sent at most every this many seconds, and at the end.
    flush_every_s: float = 2.0
    # Log a model run's per-epoch metrics every N-th epoch (and the last); null (auto): about
    # 25 points per curve, max(1, epochs // 25); 1: every epoch; 0: final values only. A
    # population's cell run keeps every model's every epoch in histories.csv either way. A
    # single run also evaluates the validation split only at these epochs (and the last).
    log_every: Optional[int] = None
    # Skip a job whose identical config already finished in this experiment (resumable sweeps).
    resume: bool = True


@dataclass
class TuneConfig:
    """The learning-rate grid a job trains beside its seeds, and what selects from it."""

    # The grid is optimizer.lr times each factor (null: the configured lr alone).
    lr_factors: Optional[List[float]] = None
    # Validation metric that selects the lr (mean over seeds); auto: val/balanced_accuracy for
    # classification, val/f1_macro for multilabel, val/rmse for regression.
    metric: str = "auto"
    # Tuning seeds (seed + 100000 ...), apart from the evaluation seeds: they train the grid.
    seeds: int = 3
    # Grid steps added beyond an edge the choice lands on, per side, before giving up.
    max_extensions: int = 2


@dataclass
class ClaimConfig:
    """What an experiment (``experiments/<name>.yaml``) claims and how its verdict is computed."""

    name: Optional[str] = None
    text: str = ""
    source: str = ""
    verdict: Dict[str, Any] = field(default_factory=dict)
    # Overrides that re-check the claim on a real dataset (run_all --real; MLflow experiment
    # <name>_real), e.g. ["task=breast_cancer"].
    real_data: List[str] = field(default_factory=list)


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    # The first seed, and how many seeds (seed, seed+1, ...) train together as one population;
    # each seed is logged as its own run.
    seed: int = 0
    seeds: int = 1
    profile: str = "quick"
    # Per-profile values an experiment reads through interpolation, e.g.
    # ``trainer.epochs: ${profiles.${profile}.epochs}``.
    profiles: Dict[str, Any] = field(default_factory=dict)
    # An experiment's named arms: ``arm=<name>`` applies ``arms[<name>]``, a mapping of keys to
    # values (``loss: focal`` names a group choice, ``loss.gamma: 1.0`` sets a field), so a
    # sweep can pair head and loss choices instead of crossing them.
    arm: Optional[str] = None
    arms: Dict[str, Any] = field(default_factory=dict)


def register_schema() -> None:
    ConfigStore.instance().store(name="actloss_schema", node=Config)


INITS = ("default", "kaiming", "xavier", "normal")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
CLASS_WEIGHTS = ("none", "balanced")
PROFILES = ("quick", "full")


GROUPS_WITH_NAME = ("task", "activation", "head", "loss", "optimizer")


def apply_arm(cfg: Any) -> None:
    """Apply ``cfg.arms[cfg.arm]`` in place (no-op without an arm); ConfigError if unknown."""
    from omegaconf import OmegaConf

    if cfg.arm is None:
        return
    if cfg.arm not in cfg.arms:
        raise ConfigError(f"arm={cfg.arm!r} is not an arm of this experiment; choose one of: "
                          f"{', '.join(cfg.arms) or '(none defined)'}")
    for key, value in cfg.arms[cfg.arm].items():
        key = f"{key}.name" if key in GROUPS_WITH_NAME else key
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except Exception as e:  # unknown key or wrong type in the arm itself
            first_line = str(e).splitlines()[0]
            raise ConfigError(f"arms.{cfg.arm}: {key}={value!r}: {first_line}") from None


def _allowed(key: str, value: Any, allowed: List[str] | tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _check(key: str, value: Any, ok: bool, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed; it must be {rule}")


def validate(cfg: Any) -> None:
    """Check option names and value ranges of a composed config; raise ConfigError (one line)."""
    from actloss_bench.engine.activations import ACTIVATIONS, HEADS
    from actloss_bench.engine.losses import LOSSES
    from actloss_bench.engine.tasks import TARGET_SCALINGS, TASKS

    _allowed("task", cfg.task.name, sorted(TASKS))
    _allowed("activation", cfg.activation.name, sorted(ACTIVATIONS))
    _allowed("head", cfg.head.name, sorted(HEADS))
    _allowed("loss", cfg.loss.name, sorted(LOSSES))
    _allowed("optimizer", cfg.optimizer.name, OPTIMIZERS)
    _allowed("model.init", cfg.model.init, INITS)
    _allowed("trainer.device", cfg.trainer.device, DEVICES)
    _allowed("loss.class_weight", cfg.loss.class_weight, CLASS_WEIGHTS)
    _allowed("profile", cfg.profile, PROFILES)
    _allowed("task.target_scaling", cfg.task.target_scaling, TARGET_SCALINGS)

    t = cfg.task
    _check("task.n_samples", t.n_samples, t.n_samples >= 20, "an integer >= 20")
    _check("task.n_features", t.n_features, t.n_features >= 1, "an integer >= 1")
    _check("task.noise", t.noise, t.noise >= 0, ">= 0")
    _check("task.n_classes", t.n_classes, t.n_classes >= 2, "an integer >= 2")
    _check("task.minority_fraction", t.minority_fraction,
           0 < t.minority_fraction <= 0.5, "in (0, 0.5]")
    _check("task.outlier_fraction", t.outlier_fraction,
           0 <= t.outlier_fraction < 0.5, "in [0, 0.5)")
    _check("task.label_noise", t.label_noise, 0 <= t.label_noise < 1, "in [0, 1)")
    _check("task.outlier_scale", t.outlier_scale, t.outlier_scale >= 0, ">= 0")
    _check("task.class_sep", t.class_sep, t.class_sep > 0, "> 0")
    _check("task.target_high", t.target_high, t.target_high > t.target_low,
           f"greater than task.target_low={t.target_low}")
    for key in ("val_fraction", "test_fraction"):
        value = getattr(t, key)
        _check(f"task.{key}", value, 0 < value < 0.5, "in (0, 0.5)")

    m = cfg.model
    _check("model.depth", m.depth, m.depth >= 0,
           "an integer >= 0 (0: a linear model, no hidden layer)")
    _check("model.width", m.width, m.width >= 1, "an integer >= 1")
    _check("model.init_scale", m.init_scale, m.init_scale > 0, "> 0")

    o = cfg.optimizer
    _check("optimizer.lr", o.lr, o.lr > 0, "> 0")
    _check("optimizer.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0")
    _check("optimizer.momentum", o.momentum, 0 <= o.momentum < 1, "in [0, 1)")

    tr = cfg.trainer
    _check("trainer.epochs", tr.epochs, tr.epochs >= 1, "an integer >= 1")
    _check("trainer.batch_size", tr.batch_size, tr.batch_size >= 1, "an integer >= 1")
    if tr.grad_clip is not None:
        _check("trainer.grad_clip", tr.grad_clip, tr.grad_clip > 0, "> 0 or null")
    if tr.memory_limit_gb is not None:
        _check("trainer.memory_limit_gb", tr.memory_limit_gb, tr.memory_limit_gb > 0,
               "> 0 or null")
    if tr.threads is not None:
        _check("trainer.threads", tr.threads, tr.threads >= 1, "an integer >= 1 or null")

    lo = cfg.loss
    _check("loss.gamma", lo.gamma, lo.gamma >= 0, ">= 0")
    _check("loss.delta", lo.delta, lo.delta > 0, "> 0")
    _check("loss.label_smoothing", lo.label_smoothing, 0 <= lo.label_smoothing < 1, "in [0, 1)")
    if lo.alpha is not None:
        _check("loss.alpha", lo.alpha, 0 <= lo.alpha <= 1, "in [0, 1] or null")
    if lo.pos_weight is not None:
        _check("loss.pos_weight", lo.pos_weight, lo.pos_weight > 0, "> 0 or null")

    _check("tracking.flush_every_s", cfg.tracking.flush_every_s,
           cfg.tracking.flush_every_s >= 0, ">= 0 (0: one request per epoch)")
    _check("tracking.log_every", cfg.tracking.log_every,
           cfg.tracking.log_every is None or cfg.tracking.log_every >= 0,
           "null (about 25 points), or an integer >= 0 (1: every epoch; 0: final values only)")
    _check("seed", cfg.seed, cfg.seed >= 0, "an integer >= 0")
    _check("seeds", cfg.seeds, cfg.seeds >= 1, "an integer >= 1")
    factors = cfg.tune.lr_factors
    if factors is not None:
        _check("tune.lr_factors", list(factors),
               len(factors) > 0 and all(f > 0 for f in factors), "a list of numbers > 0, or null")
    _check("tune.seeds", cfg.tune.seeds, cfg.tune.seeds >= 1, "an integer >= 1")
    _check("tune.max_extensions", cfg.tune.max_extensions, cfg.tune.max_extensions >= 0,
           "an integer >= 0")
    if cfg.tune.metric != "auto":
        _check("tune.metric", cfg.tune.metric, cfg.tune.metric.startswith("val/"),
               "auto or a validation metric (val/...)")
