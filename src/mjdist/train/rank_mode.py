"""Rank mode: ``train`` started as one rank by torchrun, OSMO or a Kubernetes PyTorchJob.

Such schedulers start every process themselves and describe its place with torchrun-style variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``train`` then launches nothing: it plans only
its own rank (device ``cuda:<LOCAL_RANK>`` when GPUs are visible, else the CPU; seed = base + ``RANK``), creates
the process group from the environment (``env://``), takes the run directory that rank 0 chose, trains, and on
any failure exits its process at once so that torchrun stops the other ranks.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from mjdist.launch.plan import RankPlan
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig

if TYPE_CHECKING:
    from mjdist.train.plan import TrainPlan
    from mjdist.train.result import RankResult

log = logging.getLogger(__name__)


def train_as_rank(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Join the scheduler's job as this one rank and train; every rank's result, in rank order.

    Any failure is logged with its traceback and ends this process at once (see :func:`exit_on_failure`).
    """
    from mjdist.launch.worker import exit_on_failure

    if plan.launch.ranks[0].rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports progress; the others warnings and errors
    return exit_on_failure(plan.launch.ranks[0].rank, lambda: _train_in_group(plan, cfg, spec))


def _train_in_group(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    import torch
    import torch.distributed as dist

    from mjdist.launch.bootstrap import enter_device

    (own,) = plan.launch.ranks
    if own.device.startswith("cuda"):
        torch.cuda.set_device(own.device)
    dist.init_process_group(plan.launch.backend, init_method="env://", device_id=_device_id(own.device))
    try:
        joint = _joint_plan(plan)
        with enter_device(joint.launch) as ctx:
            from mjdist.train.rank import train_rank  # once the rank is set up: mujoco reads MUJOCO_GL on import

            result = train_rank(ctx, joint, cfg, spec)
        results: list[RankResult | None] = [None] * plan.launch.world_size
        dist.all_gather_object(results, result)
    finally:
        dist.destroy_process_group()
    return [result for result in results if result is not None]


def _joint_plan(plan: TrainPlan) -> TrainPlan:
    """The plan of the whole job: every rank's own plan (so params/launch.yaml lists them all), and rank 0's run
    directory, since clocks and start times differ between nodes."""
    import torch.distributed as dist

    ranks: list[RankPlan | None] = [None] * plan.launch.world_size
    dist.all_gather_object(ranks, plan.launch.ranks[0])
    chosen = [plan.run_dir]
    dist.broadcast_object_list(chosen, src=0)
    every = tuple(rank for rank in ranks if rank is not None)
    hosts = tuple(dict.fromkeys(rank.host for rank in every))
    return dataclasses.replace(
        plan, launch=dataclasses.replace(plan.launch, ranks=every, hosts=hosts), run_dir=chosen[0]
    )


def _device_id(device: str) -> object:
    import torch

    return torch.device(device) if device.startswith("cuda") else None
