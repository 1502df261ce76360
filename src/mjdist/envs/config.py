"""Configuration shared by every MuJoCo-Warp environment; tasks subclass it with their own fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mjdist.domains import at_least, check_fields, finite, flag_name, positive_finite


@dataclass(frozen=True)
class EnvConfig:
    """Settings of a batched MuJoCo-Warp environment (one per rank)."""

    num_envs: int = 1024
    """Environments simulated by EACH rank: 2 ranks x 1024 envs = 2048 environments per step."""
    episode_length: int = 500
    """Episode length in control steps; an episode that reaches it ends as a time-out."""
    decimation: int = 2
    """Physics steps per control step (control dt = decimation x the model's timestep)."""
    action_scale: float = 1.0
    """Policy actions are clipped to +-action_clip, then multiplied by this before they reach the actuators."""
    action_clip: float = 1.0
    """Bound applied to raw policy actions before scaling."""
    graph_capture: bool = True
    """Replay the physics step as a captured Warp graph (CPU and CUDA); much faster, off for debugging."""
    nconmax: int | None = None
    """Contacts allocated per world (MuJoCo-Warp's default if None)."""
    njmax: int | None = None
    """Constraint rows allocated per world (MuJoCo-Warp's default if None)."""
    max_abs_qvel: float = 1e4
    """A world whose joint velocities exceed this (or whose state turns NaN/Inf) has diverged: it is reset,
    and counted as termination reason 'diverged'."""

    def with_num_envs(self, num_envs: int) -> EnvConfig:
        """This config with ``num_envs`` environments (`play --num-envs`)."""
        return dataclasses.replace(self, num_envs=num_envs)

    def validate(self) -> None:
        """Raise ValueError (one line, naming the flag) for settings that cannot work; a task's own fields (reward
        weights, noise levels) must be numbers, not NaN."""
        for name in ("num_envs", "episode_length", "decimation"):
            at_least(flag_name(f"env.{name}"), getattr(self, name), 1)
        for name in ("action_clip", "action_scale", "max_abs_qvel"):
            positive_finite(flag_name(f"env.{name}"), getattr(self, name))
        for name in ("nconmax", "njmax"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{flag_name('env.' + name)} must be at least 1 (or left out for MuJoCo-Warp's "
                                 f"default), got {value}")  # fmt: skip
        check_fields(self, "env")
        rewards = getattr(self, "rewards", None)  # the weights of a task's reward terms (see MjWarpEnv)
        if dataclasses.is_dataclass(rewards):
            for weight in dataclasses.fields(rewards):
                finite(flag_name(f"env.rewards.{weight.name}"), getattr(rewards, weight.name))
