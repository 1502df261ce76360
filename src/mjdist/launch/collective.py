"""Plain data between the ranks of a job, over its process group: gather a value from every rank, or pass one on
from the rank that has it. Objects travel pickled (torch.distributed's ``*_object`` collectives): for the small,
plain data that ranks of one job exchange, never for anything that came from outside the job."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def gather_from_every_rank(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    import torch.distributed as dist

    values: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values  # type: ignore[return-value]


def broadcast_from(source: int, value: T | None) -> T:
    """Rank ``source``'s ``value`` on every rank (the other ranks pass None)."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]  # type: ignore[return-value]
