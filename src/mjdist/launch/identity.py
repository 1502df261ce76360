"""This process's place in a job, as its launcher (torchrunx, torchrun, OSMO, Kubernetes) wrote it into the
environment: read once, here, for the rank's set-up, the worker's failure reports and rank mode."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mjdist.launch.devices import DeviceSelectionError

SCHEDULER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""What a job started by a scheduler must set for this process to join it as one rank."""
PER_PROCESS_LAUNCHER_VARIABLES = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")
"""Set only by launchers that start each rank as its own process (torchrun, torchrunx, ``torch.distributed``'s
spawners). A scheduler's pod- or node-level RANK and WORLD_SIZE (the Kubernetes training operator sets them on every
pod) come without them, and name a node, not a process."""


@dataclass(frozen=True)
class RankIdentity:
    """RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> RankIdentity:
        """The identity the launcher set; rank 0 of 1 where it set none. A DeviceSelectionError if it is bad. In a
        task of a SLURM step (:func:`slurm_task_locals`), LOCAL_RANK and LOCAL_WORLD_SIZE default to Slurm's."""
        local_rank, local_world_size = slurm_task_locals(environ) or ("0", "1")
        values = {name: environ.get(name, default) for name, default in
                  (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", local_rank),
                   ("LOCAL_WORLD_SIZE", local_world_size))}  # fmt: skip
        numbers: dict[str, int] = {}
        for name, value in values.items():
            if not value.isdigit():
                raise DeviceSelectionError(f"{name}={value!r} is not a non-negative integer (set by your launcher)")
            numbers[name] = int(value)
        identity = cls(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"], numbers["LOCAL_WORLD_SIZE"])
        if not (identity.rank < identity.world_size and identity.local_rank < identity.local_world_size):
            raise DeviceSelectionError(f"{identity.describe()} LOCAL_WORLD_SIZE={identity.local_world_size}: a rank "
                                    "must be below its world size")  # fmt: skip
        return identity

    @classmethod
    def from_scheduler(cls, environ: Mapping[str, str] = os.environ) -> RankIdentity | None:
        """This process's identity when a scheduler started it as one rank (RANK and WORLD_SIZE set), else None;
        a DeviceSelectionError if the scheduler's variables are incomplete or bad, or if no per-process launcher
        started it: LOCAL_RANK or TORCHELASTIC_RUN_ID must be set, or it must be a task of a SLURM step whose
        SLURM_PROCID and task count are RANK and WORLD_SIZE."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        if not any(name in environ for name in PER_PROCESS_LAUNCHER_VARIABLES) and slurm_task_locals(environ) is None:
            raise DeviceSelectionError(
                f"RANK={environ['RANK']} and WORLD_SIZE={environ['WORLD_SIZE']} are set, but no per-process launcher "
                "started train (no LOCAL_RANK or TORCHELASTIC_RUN_ID, and not a task of a SLURM step with RANK="
                "SLURM_PROCID), so they may name this node rather than one process; start train with torchrun "
                "(torchrun --nnodes N --nproc-per-node M .../train ...), or unset RANK and WORLD_SIZE"
            )
        missing = [name for name in SCHEDULER_VARIABLES if not environ.get(name)]
        if missing:
            raise DeviceSelectionError(
                f"RANK and WORLD_SIZE are set, so train runs as one rank, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not; start it with torchrun (which sets them all) "
                "or unset RANK and WORLD_SIZE"
            )
        port = environ["MASTER_PORT"]
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise DeviceSelectionError(f"MASTER_PORT={port!r} is not a TCP port (1 to 65535); set by your launcher")
        return cls.read(environ)

    def describe(self) -> str:
        return f"RANK={self.rank} WORLD_SIZE={self.world_size} LOCAL_RANK={self.local_rank}"


def slurm_task_locals(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``(SLURM_LOCALID, tasks on this node)`` when this process is one task of an explicit SLURM step (started by
    ``srun``) whose RANK is its SLURM_PROCID and whose WORLD_SIZE is the step's task count; else None."""
    step_tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if "SLURM_STEP_ID" not in environ or step_tasks is None or environ.get("RANK") is None:
        return None
    if environ.get("SLURM_PROCID") != environ["RANK"] or step_tasks != environ.get("WORLD_SIZE"):
        return None
    per_node = _expand_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", ""))
    node = int(environ.get("SLURM_NODEID", "0")) if environ.get("SLURM_NODEID", "0").isdigit() else 0
    return environ.get("SLURM_LOCALID", "0"), str(per_node[node] if node < len(per_node) else 1)


def _expand_tasks_per_node(value: str) -> list[int]:
    """Slurm's compressed task counts per node, ``"2(x3),1"``, as ``[2, 2, 2, 1]``."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match:
            counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts
