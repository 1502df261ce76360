"""Rank mode: ``train`` started as one rank by torchrun, OSMO or a Kubernetes PyTorchJob.

Such schedulers start every process themselves and describe its place with torchrun-style variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``train`` then launches nothing: it plans only
its own rank (device ``cuda:<LOCAL_RANK>`` when GPUs are visible, else the CPU; seed = base + ``RANK``), creates
the process group from the environment (``env://``), takes the run directory that rank 0 chose, trains, and on
any failure exits its process at once so that torchrun stops the other ranks.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mjdist.config import TrainConfig
from mjdist.launch.context import RankResult
from mjdist.launch.devices import DeviceSelectionError, parse_visible_devices
from mjdist.launch.plan import LaunchPlan, RankPlan
from mjdist.runs import run_dir_for
from mjdist.tasks import TaskSpec

log = logging.getLogger(__name__)

REQUIRED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class EnvironmentRank:
    """This process's place in a job that a scheduler started, read from its torchrun-style variables."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> EnvironmentRank | None:
        """None unless ``RANK`` and ``WORLD_SIZE`` are set; DeviceSelectionError if the set is incomplete or bad."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        missing = [name for name in REQUIRED if not environ.get(name)]
        if missing:
            raise DeviceSelectionError(
                f"RANK and WORLD_SIZE are set, so train runs as one rank, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not; start it with torchrun (which sets them all) "
                "or unset RANK and WORLD_SIZE"
            )
        values = {name: environ.get(name, default) for name, default in
                  (("RANK", ""), ("WORLD_SIZE", ""), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"))}  # fmt: skip
        numbers: dict[str, int] = {}
        for name, value in values.items():
            if not value.isdigit():
                raise DeviceSelectionError(f"{name}={value!r} is not a non-negative integer (set by your launcher)")
            numbers[name] = int(value)
        rank = cls(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"], numbers["LOCAL_WORLD_SIZE"])
        if not (rank.rank < rank.world_size and rank.local_rank < rank.local_world_size):
            raise DeviceSelectionError(
                f"RANK={rank.rank} WORLD_SIZE={rank.world_size} LOCAL_RANK={rank.local_rank} "
                f"LOCAL_WORLD_SIZE={rank.local_world_size}: a rank must be below its world size"
            )
        return rank

    def describe(self) -> str:
        return f"RANK={self.rank} WORLD_SIZE={self.world_size} LOCAL_RANK={self.local_rank}"


def plan_environment_rank(
    task: str,
    cfg: TrainConfig,
    rank: EnvironmentRank,
    cuda_visible_devices: str | None,
    device_count: int,
    now: datetime.datetime,
    resume_from: Path | None,
    run_dir: Path | None = None,
) -> LaunchPlan:
    """This rank's plan (in ``run_dir`` if given, else a new run directory; rank 0's is broadcast to all);
    DeviceSelectionError where --gpu-ids, --cpu-workers or --hosts contradict the scheduler."""
    visible = parse_visible_devices(cuda_visible_devices, device_count)
    physical_gpu = _rank_gpu(cfg.gpu_ids, rank, visible)
    if cfg.hosts:
        raise DeviceSelectionError(
            f"--hosts {' '.join(cfg.hosts)} contradicts {rank.describe()}: your launcher already started every rank; "
            "drop --hosts"
        )
    if cfg.cpu_workers is not None and cfg.cpu_workers != "1":
        raise DeviceSelectionError(
            f"--cpu-workers {cfg.cpu_workers} contradicts {rank.describe()}: each process is one rank; "
            "start more with torchrun --nproc-per-node instead"
        )
    if cfg.cpu_workers is not None and physical_gpu is not None:
        raise DeviceSelectionError(
            f"--cpu-workers only applies to CPU training, but GPU {physical_gpu} is visible to LOCAL_RANK="
            f"{rank.local_rank}; add --gpu-ids None to train on the CPU"
        )
    device = "cpu" if physical_gpu is None else f"cuda:{rank.local_rank}"
    return LaunchPlan(
        task=task,
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
        run_dir=str(run_dir or run_dir_for(cfg.log_root, cfg.agent.experiment_name, cfg.run_name, now)),
        torchrunx_log_dir=None,
        torch_threads=None,
        resume_from=str(resume_from.absolute()) if resume_from is not None else None,
        hosts=(socket.gethostname(),),
    )


def _rank_gpu(gpu_ids: Sequence[str], rank: EnvironmentRank, visible: list[str]) -> str | None:
    """The rank's CUDA_VISIBLE_DEVICES entry: entry LOCAL_RANK when GPUs are visible; None for the CPU."""
    if [gpu_id.lower() for gpu_id in gpu_ids] in (["none"], ["cpu"]):
        return None
    if gpu_ids and list(gpu_ids) != [str(rank.local_rank)]:
        raise DeviceSelectionError(
            f"--gpu-ids {' '.join(gpu_ids)} contradicts {rank.describe()}: each process is one rank on GPU "
            "LOCAL_RANK; drop --gpu-ids (or give --gpu-ids None for the CPU)"
        )
    if not visible:
        if gpu_ids:
            raise DeviceSelectionError(
                f"--gpu-ids {' '.join(gpu_ids)} needs a GPU, but none is visible; use --gpu-ids None for the CPU"
            )
        return None
    if rank.local_rank >= len(visible):
        raise DeviceSelectionError(
            f"LOCAL_RANK={rank.local_rank} has no GPU: {len(visible)} visible; start at most {len(visible)} "
            "processes per node (torchrun --nproc-per-node), or give --gpu-ids None for the CPU"
        )
    return visible[rank.local_rank]


def train_as_rank(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Join the scheduler's job as this one rank and train; every rank's result, in rank order.

    Any failure is logged with its traceback and ends this process at once (see :func:`exit_on_failure`).
    """
    from mjdist.launch.worker import exit_on_failure

    if plan.ranks[0].rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports progress; the others warnings and errors
    return exit_on_failure(lambda: _train_in_group(plan, cfg, spec))


def _train_in_group(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    import torch
    import torch.distributed as dist

    from mjdist.launch.rank import train_rank

    (own,) = plan.ranks
    if own.device.startswith("cuda"):
        torch.cuda.set_device(own.device)
    dist.init_process_group(plan.backend, init_method="env://", device_id=_device_id(own.device))
    try:
        result = train_rank(_joint_plan(plan), cfg, spec)
        results: list[RankResult | None] = [None] * plan.world_size
        dist.all_gather_object(results, result)
    finally:
        dist.destroy_process_group()
    return [result for result in results if result is not None]


def _joint_plan(plan: LaunchPlan) -> LaunchPlan:
    """The plan of the whole job: every rank's own plan (so params/launch.yaml lists them all), and rank 0's run
    directory, since clocks and start times differ between nodes."""
    import torch.distributed as dist

    ranks: list[RankPlan | None] = [None] * plan.world_size
    dist.all_gather_object(ranks, plan.ranks[0])
    chosen = [plan.run_dir]
    dist.broadcast_object_list(chosen, src=0)
    every = tuple(rank for rank in ranks if rank is not None)
    hosts = tuple(dict.fromkeys(rank.host for rank in every))
    return dataclasses.replace(plan, ranks=every, hosts=hosts, run_dir=chosen[0])


def _device_id(device: str) -> object:
    import torch

    return torch.device(device) if device.startswith("cuda") else None
