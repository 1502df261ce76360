"""Roll out an actor in a batch of environments, record the episodes that finish, and summarize them."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch


class SteppableEnv(Protocol):
    """The part of rsl_rl's ``VecEnv`` a rollout uses."""

    num_envs: int
    device: torch.device

    def get_observations(self) -> Any:
        """Observations of the current state."""

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        """``(obs, rewards, dones, extras)``; done environments start a new episode."""


Actor = Callable[[Any], torch.Tensor]
"""Maps a batch of observations to a batch of actions."""


@dataclass(frozen=True)
class Episodes:
    """The episodes that finished during a rollout, in the order they finished."""

    steps: int
    """Control steps taken (each one steps every environment)."""
    returns: list[float]
    """Undiscounted return of each finished episode."""
    lengths: list[int]
    """Length of each finished episode, in control steps."""


def rollout(env: SteppableEnv, actor: Actor, num_episodes: int | None, num_steps: int | None) -> Episodes:
    """Step ``env`` with ``actor`` until ``num_episodes`` episodes have finished, or for ``num_steps`` steps.

    Exactly one budget is given. Episodes still running at the end are not counted; when the episode budget is
    reached during a step, every episode that finished in that step is kept.
    """
    if (num_episodes is None) == (num_steps is None):
        raise ValueError("give exactly one of num_episodes and num_steps")
    returns: list[float] = []
    lengths: list[int] = []
    steps = 0
    with torch.inference_mode():
        running_return = torch.zeros(env.num_envs, dtype=torch.float64, device=env.device)
        running_length = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
        obs = env.get_observations()
        while num_steps is None or steps < num_steps:
            obs, rewards, dones, _ = env.step(actor(obs))
            steps += 1
            running_return += rewards
            running_length += 1
            done = dones.bool()
            if done.any():
                returns += running_return[done].tolist()
                lengths += running_length[done].tolist()
                running_return[done] = 0.0
                running_length[done] = 0
                if num_episodes is not None and len(returns) >= num_episodes:
                    break
    return Episodes(steps=steps, returns=returns, lengths=lengths)


@dataclass(frozen=True)
class PlaySummary:
    """What `play` reports: who acted where, and the statistics of the finished episodes."""

    task: str
    """The task name."""
    agent: str
    """``policy``, or the baseline that acted (``random``, ``zero``)."""
    checkpoint: str | None
    """Absolute path of the checkpoint played; None for a baseline."""
    num_envs: int
    """Environments stepped together."""
    steps: int
    """Control steps taken."""
    episodes: int
    """Episodes that finished."""
    mean_return: float | None
    """Mean undiscounted return of the finished episodes; None if none finished."""
    std_return: float | None
    """Population standard deviation of their returns (0 for one episode); None if none finished."""
    mean_length: float | None
    """Mean length of the finished episodes in control steps; None if none finished."""
    video: str | None = None
    """Absolute path of the mp4 recorded before the evaluation; None without a video."""

    @classmethod
    def of(
        cls, episodes: Episodes, task: str, agent: str, checkpoint: str | None, num_envs: int, video: str | None = None
    ) -> PlaySummary:
        """Mean and population standard deviation of the returns, mean length; None without any episode."""
        finished = bool(episodes.returns)
        return cls(
            task=task,
            agent=agent,
            checkpoint=checkpoint,
            num_envs=num_envs,
            steps=episodes.steps,
            episodes=len(episodes.returns),
            mean_return=statistics.fmean(episodes.returns) if finished else None,
            std_return=statistics.pstdev(episodes.returns) if finished else None,
            mean_length=statistics.fmean(episodes.lengths) if finished else None,
            video=video,
        )

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (None becomes null)."""
        return asdict(self)

    def to_text(self) -> str:
        """One line, e.g. ``cartpole-balance | policy model_99.pt | 32 episodes over 16 envs | return ...``."""
        who = self.agent if self.checkpoint is None else f"{self.agent} {Path(self.checkpoint).name}"
        if self.mean_return is None or self.std_return is None or self.mean_length is None:
            result, length = "n/a", "n/a"
        else:
            result, length = f"{self.mean_return:.2f} ± {self.std_return:.2f}", f"{self.mean_length:.1f} steps"
        episodes = f"{_count(self.episodes, 'episode')} over {_count(self.num_envs, 'env')}"
        return f"{self.task} | {who} | {episodes} | return {result} | length {length}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
