"""One start point for every rank of a job, with no storage shared between the nodes.

Each rank looks on its own disk for the checkpoint to continue from (``--resume auto``: the newest loadable
checkpoint of the newest run named ``--run-name``; ``--resume PATH``: that checkpoint or run directory, where this
node has it) and reports what it found, with the flags that must be the same on every rank. The newest checkpoint
any rank found wins (the lowest rank among equals). Only the rank that holds it reads it; it sends the checkpoint's
state to the others over the process group (:func:`checkpoint_state`), so no other rank reads its disk for it. The
run goes on in rank 0's run directory, on rank 0's host; where the checkpoint came from elsewhere (rank 0 moved to
another node), the plan and ``summary.json`` name that directory as ``continued_from``. A rank started with other
flags, or whose checkpoint cannot be used, makes every rank stop with the same one-line error.

In rank mode (torchrun, OSMO, Kubernetes) every process plans for itself, so the ranks agree once they have joined
the process group (:func:`agree_on_start`). Ranks that torchrunx starts get one plan from one launcher, and agree by
construction; in every multi-rank job, the checkpoint's state reaches the ranks through :func:`checkpoint_state`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjdist.checkpoints import (
    Checkpoint,
    CheckpointError,
    UnsafeCheckpointError,
    newest_loadable_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)
from mjdist.launch.collective import broadcast_from, gather_from_every_rank
from mjdist.launch.context import RankContext
from mjdist.train.config import TrainConfig
from mjdist.train.plan import TrainPlan
from mjdist.train.requeue import AUTO, newest_run_dir

log = logging.getLogger(__name__)


class RanksDisagree(CheckpointError):
    """The ranks of one job were started with different flags, or one cannot use its checkpoint; one line."""


@dataclass(frozen=True)
class RankView:
    """What one rank was asked to do and found on its own disk."""

    rank: int
    host: str
    flags: tuple[tuple[str, str], ...]
    """The flags that decide the start and end point, which every rank must share, as (flag, value) pairs."""
    checkpoint: str | None = None
    """The checkpoint it found (absolute), or None."""
    iteration: int | None = None
    """The iteration that checkpoint was saved after."""
    error: str | None = None
    """Why its checkpoint cannot be used (one line), or None."""


def agree_on_start(plan: TrainPlan, cfg: TrainConfig) -> TrainPlan:
    """The plan every rank of the job continues from: the newest checkpoint any rank sees, its holder, and the end
    iteration. Every rank calls it at once, in the process group; a :class:`RanksDisagree` on every rank when they
    cannot agree."""
    import torch.distributed as dist

    views = gather_from_every_rank(local_view(cfg, plan.task, dist.get_rank(), socket.gethostname()))
    winner = choose_start(views, cfg)
    if winner is None or winner.checkpoint is None or winner.iteration is None:  # a start from scratch
        return dataclasses.replace(
            plan, resume_from=None, resume_iteration=None, end_iteration=cfg.agent.max_iterations
        )
    start = winner.iteration
    end = cfg.agent.max_iterations if cfg.resume == AUTO else start + 1 + cfg.agent.max_iterations
    checkpoint_dir = str(Path(winner.checkpoint).parent)
    moved = cfg.resume == AUTO and (winner.host != views[0].host or checkpoint_dir != plan.run_dir)
    continued_from = f"{winner.host}:{checkpoint_dir}" if moved else None  # rank 0 moved to a node without the run
    log.info("Every rank continues from %s (rank %d on %s, iteration %d)", winner.checkpoint, winner.rank,
             winner.host, start)  # fmt: skip
    return dataclasses.replace(
        plan,
        resume_from=winner.checkpoint,
        resume_iteration=start,
        end_iteration=end,
        resume_rank=winner.rank,
        continued_from=continued_from,
    )


def local_view(cfg: TrainConfig, task: str, rank: int, host: str) -> RankView:
    """The checkpoint this rank's disk holds for the run (none, for a ``--resume PATH`` this node does not have)."""
    flags = (
        ("--resume", str(cfg.resume)),
        ("--run-name", cfg.run_name),
        ("--agent.experiment-name", cfg.agent.experiment_name),
        ("--agent.max-iterations", str(cfg.agent.max_iterations)),
        ("task", task),
    )
    view = RankView(rank, host, flags)
    try:
        if cfg.resume == AUTO:
            checkpoint = _continuation(cfg, task)
        elif cfg.resume is not None and cfg.resume.exists():
            checkpoint = resolve_checkpoint(cfg.resume.absolute(), task)
        else:
            return view
    except CheckpointError as error:
        return dataclasses.replace(view, error=str(error))
    if checkpoint is None:
        return view
    return dataclasses.replace(view, checkpoint=str(checkpoint.path), iteration=checkpoint.iteration)


def _continuation(cfg: TrainConfig, task: str) -> Checkpoint | None:
    """``--resume auto``'s checkpoint on this disk, as a single process finds it
    (:func:`~mjdist.train.requeue.find_continuation`), except that a checkpoint that a safe load refuses is an error,
    as it is for ``--resume PATH``."""
    run_dir = newest_run_dir(cfg.log_root / cfg.agent.experiment_name, cfg.run_name)
    if run_dir is None:
        return None
    try:
        return newest_loadable_checkpoint(run_dir, task)
    except UnsafeCheckpointError:
        raise
    except CheckpointError:  # no checkpoint, or none loadable: this rank has nothing to offer
        return None


def choose_start(views: list[RankView], cfg: TrainConfig) -> RankView | None:
    """The view holding the newest checkpoint (the lowest rank among equals), or None to start from scratch; a
    RanksDisagree when a rank was started with other flags than rank 0, or found a checkpoint it cannot use."""
    first = views[0]
    for view in views[1:]:
        differing = [(flag, value, own) for (flag, value), (_, own) in zip(first.flags, view.flags, strict=True)
                     if value != own]  # fmt: skip
        if differing:
            flag, value, own = differing[0]
            raise RanksDisagree(
                f"rank {view.rank} on {view.host} was started with {flag} {own}, rank 0 on {first.host} with "
                f"{flag} {value}; start every rank with the same command"
            )
    for view in views:
        if view.error is not None:
            raise RanksDisagree(f"rank {view.rank} on {view.host}: {view.error}")
    found = [view for view in views if view.checkpoint is not None]
    if not found:
        if cfg.resume is not None and cfg.resume != AUTO:
            raise RanksDisagree(f"checkpoint {cfg.resume} does not exist on any node of the job")
        return None
    return max(found, key=lambda view: (view.iteration, -view.rank))


def checkpoint_state(plan: TrainPlan, ctx: RankContext) -> dict[str, Any]:
    """The state of the plan's checkpoint (networks, optimizer, normalizers, iteration): read, weights-only, by the
    rank that holds it (plan.resume_rank), and sent from there to every other rank of a multi-rank job, which
    loads it weights-only too."""
    import torch

    path = Path(plan.resume_from)  # type: ignore[arg-type]
    if ctx.world_size == 1:
        return read_checkpoint(path, plan.task).state
    serialized = None
    if ctx.rank == plan.resume_rank:
        buffer = io.BytesIO()
        torch.save(read_checkpoint(path, plan.task).state, buffer)
        serialized = buffer.getvalue()
    received: bytes = broadcast_from(plan.resume_rank, serialized)
    return torch.load(io.BytesIO(received), map_location="cpu", weights_only=True)
