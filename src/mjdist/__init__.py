"""mjdist: PPO on MuJoCo-Warp from one process to many GPUs or CPU cores, from the shell or from Python.

The public API is what ``__all__`` lists; every other module is internal and may change. ``import mjdist``
stays light: torch, Warp and the tasks are imported when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# ``launch``, ``play`` and ``train`` are also the names of subpackages: importing the functions here binds them over
# the subpackages' attributes for good (``from mjdist.play.config import PlayConfig`` keeps working; string paths
# such as monkeypatch.setattr("mjdist.launch.x.y", ...) do not: pass the module object instead).
from mjdist.errors import ConfigError, MjdistError, RankFailedError, UsageError
from mjdist.launch.function import launch
from mjdist.play.run import play
from mjdist.tasks import TaskSpec, get_task, registered_tasks
from mjdist.train.run import train

if TYPE_CHECKING:
    from mjdist.checkpoints import CheckpointError
    from mjdist.envs.config import EnvConfig
    from mjdist.launch.devices import DeviceSelectionError
    from mjdist.play.evaluation import PlaySummary
    from mjdist.rl.config import AgentConfig, ModelConfig, PpoConfig
    from mjdist.train.result import TrainResult

__all__ = [
    "AgentConfig",
    "CheckpointError",
    "ConfigError",
    "DeviceSelectionError",
    "EnvConfig",
    "MjdistError",
    "ModelConfig",
    "PlaySummary",
    "PpoConfig",
    "RankFailedError",
    "TaskSpec",
    "TrainResult",
    "UsageError",
    "get_task",
    "launch",
    "play",
    "registered_tasks",
    "train",
]

_LAZY = {
    "TrainResult": "mjdist.train.result",
    "PlaySummary": "mjdist.play.evaluation",
    "CheckpointError": "mjdist.checkpoints",
    "DeviceSelectionError": "mjdist.launch.devices",
    "EnvConfig": "mjdist.envs.config",
    "AgentConfig": "mjdist.rl.config",
    "ModelConfig": "mjdist.rl.config",
    "PpoConfig": "mjdist.rl.config",
}


def __getattr__(name: str) -> Any:
    """Import the public names whose modules are heavier (torch) on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'mjdist' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
