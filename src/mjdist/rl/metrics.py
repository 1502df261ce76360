"""Where a rank's iterations spent their time, the one definition of a run's throughput, and what rank 0 reports
after each iteration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class IterationTiming:
    """Where one PPO iteration's wall time went on a rank, in seconds."""

    collect_s: float
    """Rollout: stepping the environments and acting (rsl_rl's collection time)."""
    learn_s: float
    """Returns and the PPO update (rsl_rl's learning time); includes sync_s."""
    sync_s: float
    """Gradient all-reduce inside the update (0 for a single rank), waiting for the slowest rank included: the
    calls' host time on the CPU (gloo), CUDA event time on GPUs (NCCL returns before its work has run)."""


def env_steps_per_s(timings: Sequence[IterationTiming], steps_per_iteration: int) -> float | None:
    """Environment steps per second of all ranks together: the steps the iterations collected over their collection
    and learning time, leaving out the first iteration (warm-up: kernel loads, graph capture, allocator growth)
    when there are several. ``steps_per_iteration`` is num_steps_per_env x num_envs x ranks. None without time.

    The progress line (one iteration at a time), ``TrainResult``, ``summary.json`` and ``bench train`` all use it.
    """
    timed = timings[1:] or timings
    seconds = sum(timing.collect_s + timing.learn_s for timing in timed)
    return steps_per_iteration * len(timed) / seconds if timed and seconds > 0 else None


@dataclass(frozen=True)
class TrainingMetrics:
    """How far training got and how it did, as seen by rank 0."""

    iterations: int = 0
    """PPO iterations completed in this run (a resumed run counts only its own)."""
    env_steps_per_s: float | None = None
    """Environment steps of all ranks per second (:func:`env_steps_per_s`) over the run's iterations."""
    mean_reward: float | None = None
    """Mean return of the last 100 episodes that finished on rank 0 (None before the first one)."""
    mean_episode_length: float | None = None
    """Their mean length in control steps."""
