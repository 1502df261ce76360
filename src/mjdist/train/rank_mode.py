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
import socket
from typing import TYPE_CHECKING

from mjdist.launch.devices import DeviceRequest, DeviceSelectionError
from mjdist.launch.identity import RankIdentity
from mjdist.launch.machine import Machine
from mjdist.launch.plan import LaunchPlan, RankPlan
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig

if TYPE_CHECKING:
    from mjdist.train.plan import TrainPlan
    from mjdist.train.result import RankResult

log = logging.getLogger(__name__)


def plan_scheduler_rank(
    task: str, cfg: TrainConfig, request: DeviceRequest, rank: RankIdentity, machine: Machine
) -> LaunchPlan:
    """This rank's plan; DeviceSelectionError where --gpu-ids, --cpu-workers or --hosts contradict the scheduler."""
    physical_gpu = _rank_gpu(request, rank, machine)
    if cfg.hosts:
        raise DeviceSelectionError(
            f"--hosts {' '.join(cfg.hosts)} contradicts {rank.describe()}: your launcher already started every rank; "
            "drop --hosts"
        )
    if request.cpu_workers is not None and request.cpu_workers != 1:
        raise DeviceSelectionError(
            f"--cpu-workers {request.cpu_workers} contradicts {rank.describe()}: each process is one rank; "
            "start more with torchrun --nproc-per-node instead"
        )
    if request.cpu_workers is not None and physical_gpu is not None:
        raise DeviceSelectionError(
            f"--cpu-workers only applies to CPU training, but GPU {physical_gpu} is visible to LOCAL_RANK="
            f"{rank.local_rank}; add --gpu-ids None to train on the CPU"
        )
    device = "cpu" if physical_gpu is None else f"cuda:{rank.local_rank}"
    return LaunchPlan(
        name=task,
        launcher="environment",
        world_size=rank.world_size,
        backend="gloo" if physical_gpu is None else "nccl",
        ranks=(
            RankPlan(
                rank=rank.rank,
                host=socket.gethostname(),
                local_rank=rank.local_rank,
                device=device,
                physical_gpu=physical_gpu,
                seed=cfg.agent.seed + rank.rank,
            ),
        ),
        torchrunx_log_dir=None,
        torch_threads=None,
        hosts=(socket.gethostname(),),
    )


def _rank_gpu(request: DeviceRequest, rank: RankIdentity, machine: Machine) -> str | None:
    """The rank's CUDA_VISIBLE_DEVICES entry: entry LOCAL_RANK when GPUs are visible; None for the CPU."""
    if request.gpus == "cpu":
        return None
    visible = machine.visible
    if request.gpus != "default" and request.gpus != (rank.local_rank,):
        raise DeviceSelectionError(
            f"{request.gpu_flag} contradicts {rank.describe()}: each process is one rank on GPU LOCAL_RANK; drop "
            "--gpu-ids (or give --gpu-ids None for the CPU)"
        )
    if not visible:
        if request.gpus != "default":
            raise DeviceSelectionError(
                f"{request.gpu_flag} needs a GPU, but none is visible; use --gpu-ids None for the CPU"
            )
        return None
    if machine.on_mig and rank.local_rank > 0:
        raise DeviceSelectionError(
            f"LOCAL_RANK={rank.local_rank} on MIG instances: a CUDA process sees only the first MIG instance in "
            "CUDA_VISIBLE_DEVICES, so one node cannot run several ranks on MIG; start one process per node "
            "(torchrun --nproc-per-node 1) with its own instance, or use whole GPUs"
        )
    if rank.local_rank >= len(visible):
        raise DeviceSelectionError(
            f"LOCAL_RANK={rank.local_rank} has no GPU: {len(visible)} visible; start at most {len(visible)} "
            "processes per node (torchrun --nproc-per-node), or give --gpu-ids None for the CPU"
        )
    return visible[rank.local_rank]


def train_as_rank(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Join the scheduler's job as this one rank and train; every rank's result, in rank order.

    Any failure is logged with its traceback and ends this process at once (see :func:`exit_on_failure`).
    """
    from mjdist.launch.worker import exit_on_failure

    if plan.launch.ranks[0].rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports progress; the others warnings and errors
    return exit_on_failure(lambda: _train_in_group(plan, cfg, spec))


def _train_in_group(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    import torch
    import torch.distributed as dist

    from mjdist.launch.bootstrap import enter_device
    from mjdist.train.rank import train_rank

    (own,) = plan.launch.ranks
    if own.device.startswith("cuda"):
        torch.cuda.set_device(own.device)
    dist.init_process_group(plan.launch.backend, init_method="env://", device_id=_device_id(own.device))
    try:
        joint = _joint_plan(plan)
        with enter_device(joint.launch) as ctx:
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
