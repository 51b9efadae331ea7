"""``hydra/sweeper=actloss`` (the project's default): Hydra's basic sweeper, composing each job
once instead of twice.

Hydra's ``BasicSweeper`` composes every job's config before launching the batch, to catch
composition errors early, and the launcher composes it again to run it: ~0.1 s of YAML work
per job, twice. Here ``actloss-bench`` has already composed every swept value on its own
(``actloss_bench.preflight``: a bad value fails in one line before the sweep starts), so only
the batch's first job is composed up front; the rest are composed once, by the launcher.
Everything else (``hydra.sweeper.params``, ``max_batch_size``, launchers) is the basic sweeper's.
Hydra finds plugins only in the ``hydra_plugins`` namespace package, hence this location.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class ActlossSweeperConf:
    _target_: str = "hydra_plugins.actloss_sweeper.actloss_sweeper.ActlossSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="actloss", node=ActlossSweeperConf,
                             provider="actloss_bench")


class ActlossSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(batch[:1])
