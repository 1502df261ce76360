"""A rank's identity (read once from the launcher's environment) and what it reports back.

Kept free of heavy imports: the torchrunx agent and the launcher unpickle RankResult.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mjdist.launch.plan import LaunchPlan, RankPlan


@dataclass(frozen=True)
class RankContext:
    """This process's place in the job, read once from the launcher's environment (RANK, LOCAL_RANK...)."""

    rank: int
    local_rank: int
    world_size: int
    device: str
    seed: int

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only rank that writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, plan: LaunchPlan) -> RankContext:
        """Read the rank torchrunx or torchrun assigned (0 in a single process) and look it up in the plan."""
        rank = int(os.environ.get("RANK", "0"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size != plan.world_size:
            raise RuntimeError(f"launched with WORLD_SIZE={world_size}, but the plan has {plan.world_size} ranks")
        rank_plan: RankPlan = plan.rank_plan(rank)
        return cls(rank, rank_plan.local_rank, world_size, rank_plan.device, rank_plan.seed)


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
