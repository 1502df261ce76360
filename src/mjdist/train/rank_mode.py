"""Rank mode: ``train`` started as one rank by torchrun, OSMO or a Kubernetes PyTorchJob.

Such schedulers start every process themselves and describe its place with torchrun-style variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``train`` then launches nothing: it plans only
its own rank (device ``cuda:<LOCAL_RANK>`` when GPUs are visible, else the CPU; seed = base + ``RANK``), creates
the process group from the environment (``env://``), takes the run directory that rank 0 chose, agrees with the
other ranks on the checkpoint to continue from (:mod:`mjdist.train.resume_point`: no storage needs to be shared),
trains under its own hang watchdog (``--timeout``), and on any failure exits its process at once so that torchrun
stops the other ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mjdist.launch.identity import RankIdentity
from mjdist.launch.plan import RankPlan
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig
from mjdist.train.resume_point import agree_on_start

if TYPE_CHECKING:
    from mjdist.train.plan import TrainPlan
    from mjdist.train.result import RankResult

log = logging.getLogger(__name__)


@contextlib.contextmanager
def scheduler_job(plan: TrainPlan, cfg: TrainConfig) -> Iterator[TrainPlan]:
    """Join the process group of the job the scheduler started (``env://``) for the block, and yield the job's whole
    plan: every rank's own plan (so params/launch.yaml and summary.json list them all), rank 0's run directory,
    since clocks and start times differ between nodes, and the start and end point the ranks agreed on (a
    RanksDisagree, on every rank, if they cannot agree)."""
    import torch
    import torch.distributed as dist

    (own,) = plan.launch.ranks
    if own.device.startswith("cuda"):
        torch.cuda.set_device(own.device)
    dist.init_process_group(plan.launch.backend, init_method="env://", device_id=_device_id(own.device))
    try:
        ranks: list[RankPlan | None] = [None] * plan.launch.world_size
        dist.all_gather_object(ranks, own)
        chosen = [plan.run_dir]
        dist.broadcast_object_list(chosen, src=0)
        every = tuple(rank for rank in ranks if rank is not None)
        hosts = tuple(dict.fromkeys(rank.host for rank in every))
        launch = dataclasses.replace(plan.launch, ranks=every, hosts=hosts)
        yield agree_on_start(dataclasses.replace(plan, launch=launch, run_dir=chosen[0]), cfg)
    finally:
        dist.destroy_process_group()


def train_as_rank(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Train as this process's rank of the scheduler's job (``plan``: the whole job's, from :func:`scheduler_job`);
    every rank's result, in rank order.

    Any failure is logged with its traceback and ends this process at once (see :func:`exit_on_failure`).
    """
    from mjdist.launch.worker import exit_on_failure

    identity = RankIdentity.read()
    if identity.rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports progress; the others warnings and errors
    return exit_on_failure(identity.rank, lambda: _train_in_group(plan, cfg, spec, identity))


def _train_in_group(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec, identity: RankIdentity) -> list[RankResult]:
    import torch.distributed as dist

    from mjdist.launch.bootstrap import enter_device
    from mjdist.launch.watchdog import watching_this_process

    with enter_device(plan.launch, identity) as ctx, watching_this_process(cfg.timeout, identity.rank):
        from mjdist.train.rank import train_rank  # once the rank is set up: mujoco reads MUJOCO_GL on import

        result = train_rank(ctx, plan, cfg, spec)
    results: list[RankResult | None] = [None] * plan.launch.world_size
    dist.all_gather_object(results, result)
    return [result for result in results if result is not None]


def _device_id(device: str) -> object:
    import torch

    return torch.device(device) if device.startswith("cuda") else None
