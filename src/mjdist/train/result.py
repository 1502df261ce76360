"""What a training run returns: each rank's report, and the run's result as ``mjdist.train`` gives it.

Kept free of heavy imports: the torchrunx agent and the launcher unpickle RankResult.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjdist.rl.metrics import IterationTiming
from mjdist.runs import to_plain


@dataclass(frozen=True)
class RankResult:
    """What a rank reports back: enough to check that ranks agree and that their experience differed."""

    rank: int
    parameter_digest: str
    """sha256 over the policy and value network parameters (equal on every rank after training)."""
    observation_digest: str
    """sha256 over the rank's last observations (differs across ranks: different seeds)."""
    iterations: tuple[IterationTiming, ...] = ()
    """Timing of each iteration this rank ran, in order (the first one includes warm-up)."""
    mean_reward: float | None = None
    """Mean return of the last 100 episodes finished on rank 0 (the progress line's reward). None on the other
    ranks (rsl_rl records episodes only where it logs), and when no episode finished."""
    mean_episode_length: float | None = None
    """Mean length in control steps of those episodes; None like mean_reward."""


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: where it went, its final metrics, and what every rank reported."""

    task: str
    """The task trained."""
    run_dir: Path
    """The run directory (configs, checkpoints, exported policy, logs)."""
    world_size: int
    """Ranks that trained."""
    devices: tuple[str, ...]
    """Each rank's torch device, in rank order ('cpu', 'cuda:0', ...)."""
    hosts: tuple[str, ...]
    """The hosts the ranks ran on, in rank order of their first rank ('localhost' for this host alone)."""
    iterations: int
    """PPO iterations run (with ``resume``: in addition to the checkpoint's; after restarts: by the last attempt;
    0 when ``resume="auto"`` found the run already finished)."""
    wall_time_s: float
    """Seconds from the launch to the last rank's return (start-up and kernel compiles included)."""
    env_steps_per_s: float | None
    """Environment steps per second of all ranks together (:func:`mjdist.rl.timing.env_steps_per_s`: every
    iteration but the first, warm-up, or the first when there is only one); None after zero iterations."""
    mean_reward: float | None
    """Mean return of the last 100 episodes finished on rank 0 (as the progress line and TensorBoard's
    Train/mean_reward show it); None if no episode finished."""
    mean_episode_length: float | None
    """Mean length of those episodes, in control steps; None if no episode finished."""
    checkpoints: tuple[Path, ...]
    """The run's ``model_<it>.pt`` files, by iteration."""
    exports: tuple[Path, ...]
    """Files under ``<run dir>/exported``: ``model_<it>.onnx`` per checkpoint, and the final ``policy.onnx`` and
    ``policy.pt`` (TorchScript)."""
    parameter_digest: str
    """sha256 of the final actor and critic parameters (the same on every rank); '' when nothing was trained."""
    ranks: tuple[RankResult, ...]
    """What each rank reported, in rank order: its digests and the timing of each iteration."""

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (paths as strings)."""
        return to_plain(self)
