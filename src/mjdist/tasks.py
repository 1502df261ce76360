"""Task registry: tasks are found through the ``mjdist.tasks`` entry-point group.

Each entry point is named after its task (lowercase-kebab, e.g. ``cartpole-balance``) and points at a
:class:`TaskSpec`. The bundled tasks register exactly like a third-party package would::

    [project.entry-points."mjdist.tasks"]
    my-task = "my_package.my_task:SPEC"
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjdist.errors import UsageError
from mjdist.mjlab_tasks import load_mjlab_task, mjlab_task_ids

if TYPE_CHECKING:
    from rsl_rl.env import VecEnv

    from mjdist.envs.config import EnvConfig
    from mjdist.envs.core import MjWarpEnv
    from mjdist.rl.config import AgentConfig
    from mjdist.rl.runner import DistributedRunner

ENTRY_POINT_GROUP = "mjdist.tasks"
TASK_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class TaskSpec:
    """Everything `train` and `play` need to know about a task."""

    name: str
    """Lowercase-kebab task name, as typed on the command line."""
    env_class: str
    """``"module:Class"`` of the environment, imported only where it runs (its imports are heavy)."""
    env: EnvConfig
    """Default environment configuration for training."""
    agent: AgentConfig
    """Default PPO configuration."""
    play_env: EnvConfig | None = None
    """Environment configuration for `play` (fewer environments, no noise...); the training one if None."""
    video_camera: str | None = None
    """MJCF camera that follows the robot in `play --video` videos (None: MuJoCo's free camera)."""
    model_file: Path | None = None
    """The task's MJCF model, which the memory pre-flight reads its sizes from; None: the environment class's
    ``model_file`` (importing the class, and with it MuJoCo-Warp, which takes seconds)."""
    vec_env: str = "mjdist.envs.vec_env:mjdist_vec_env"
    """``"module:function"`` that builds one rank's rsl_rl VecEnv: ``function(spec, env_config, agent_config,
    device=..., seed=...)``."""
    runner_class: str = "mjdist.rl.runner:DistributedRunner"
    """``"module:Class"`` of the rsl_rl runner: :class:`~mjdist.rl.runner.DistributedRunner` or a subclass."""
    refused_flags: tuple[tuple[str, str], ...] = ()
    """``(flag, why)`` for the train and play flags this task cannot honour: given, each is refused in one line."""

    def refuse(self, flag: str) -> None:
        """A UsageError (exit code 2) if this task cannot honour ``flag``."""
        for refused, why in self.refused_flags:
            if refused == flag:
                raise UsageError(f"{flag} does not work with task {self.name}: {why}")

    def model_path(self) -> Path:
        """The task's MJCF model file."""
        return self.model_file if self.model_file is not None else self.load_env_class().model_file

    @property
    def description(self) -> str:
        """One paragraph for --help: the environment config's docstring."""
        return (type(self.env).__doc__ or self.name).strip()

    def load_env_class(self) -> type[MjWarpEnv]:
        """Import the environment class, constructed as ``cls(env_config, device=..., seed=...)``."""
        return _load(self.env_class)

    def build_vec_env(self, env: Any, agent: Any, device: str, seed: int) -> VecEnv:
        """One rank's environment behind rsl_rl's VecEnv contract, seeded with ``seed``."""
        return _load(self.vec_env)(self, env, agent, device=device, seed=seed)

    def load_runner_class(self) -> type[DistributedRunner]:
        """Import the runner class, constructed like :class:`~mjdist.rl.runner.DistributedRunner`."""
        return _load(self.runner_class)


def _load(reference: str) -> Any:
    """The object ``"module:attribute"`` names, imported."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class TaskRegistryError(RuntimeError):
    """A registered task is malformed (bad name, wrong object behind the entry point)."""


@cache
def registered_tasks() -> dict[str, TaskSpec]:
    """Load every task registered under the ``mjdist.tasks`` entry-point group, sorted by name."""
    tasks: dict[str, TaskSpec] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if not TASK_NAME.match(entry_point.name):
            raise TaskRegistryError(
                f"task name {entry_point.name!r} (from {entry_point.value}) is not lowercase-kebab, "
                "e.g. 'cartpole-balance'"
            )
        spec = entry_point.load()
        if not isinstance(spec, TaskSpec) or spec.name != entry_point.name:
            raise TaskRegistryError(
                f"entry point {entry_point.name!r} -> {entry_point.value} must be a TaskSpec named {entry_point.name!r}"
            )
        tasks[spec.name] = spec
    return dict(sorted(tasks.items()))


def get_task(name: str) -> TaskSpec:
    """The registered task ``name``: its spec, whose ``env`` and ``agent`` are the default configs (frozen
    dataclasses, to change with ``dataclasses.replace``; an mjlab task's are mjlab's own, mutable). mjdist's tasks
    come first, then mjlab's registry (when mjlab is installed). An unknown name is a UsageError listing the known
    ones."""
    tasks = registered_tasks()
    if name in tasks:
        return tasks[name]
    if name in mjlab_task_ids():
        return load_mjlab_task(name)
    raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")


def task_names() -> list[str]:
    """Every task's name: mjdist's, then mjlab's ids that no mjdist task takes (without importing mjlab's tasks
    when their list is cached)."""
    own = registered_tasks()
    return [*own, *(task_id for task_id in mjlab_task_ids() if task_id not in own)]
