"""A rank's place in the job: its identity (read once from the launcher's environment) looked up in the plan.

Kept free of heavy imports: the torchrunx agent and the launcher import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mjdist.launch.identity import RankIdentity
from mjdist.launch.plan import LaunchPlan


@dataclass(frozen=True)
class RankContext:
    """This process's place in the job: its global and local rank, the world size, its device and seed."""

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
    def of(cls, plan: LaunchPlan, identity: RankIdentity) -> RankContext:
        """The rank ``identity`` names, looked up in ``plan``."""
        if identity.world_size != plan.world_size:
            raise RuntimeError(
                f"launched with WORLD_SIZE={identity.world_size}, but the plan has {plan.world_size} ranks"
            )
        rank_plan = plan.rank_plan(identity.rank)
        return cls(identity.rank, rank_plan.local_rank, identity.world_size, rank_plan.device, rank_plan.seed)
