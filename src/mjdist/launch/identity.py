"""This process's place in a job, as its launcher (torchrunx, torchrun, OSMO, Kubernetes) wrote it into the
environment: read once, here, for the rank's set-up, the worker's failure reports and rank mode."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mjdist.launch.devices import DeviceSelectionError

SCHEDULER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""What a job started by a scheduler must set for this process to join it as one rank."""


@dataclass(frozen=True)
class RankIdentity:
    """RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> RankIdentity:
        """The identity the launcher set; rank 0 of 1 where it set none. A DeviceSelectionError if it is bad."""
        values = {name: environ.get(name, default) for name, default in
                  (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"))}  # fmt: skip
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
        a DeviceSelectionError if the scheduler's variables are incomplete or bad."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
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
