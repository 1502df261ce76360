"""The plan of a job's ranks: every rank's host, device and seed, the backend, threads and log files.

Computed once, in the launching process, from a device selection, the hosts and the environment (or, for a process
a scheduler started as one rank, from its identity); pure data, handed to every rank. Training adds its run to it
(:mod:`mjdist.train.plan`); ``mjdist.launch`` uses it as is.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mjdist.launch.devices import DeviceRequest, DeviceSelection, DeviceSelectionError
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.identity import RankIdentity
from mjdist.launch.machine import Machine


@dataclass(frozen=True)
class RankPlan:
    """What one rank runs on."""

    rank: int
    host: str
    """The host the rank runs on ('localhost' for a single-host launch)."""
    local_rank: int
    device: str
    """torch/Warp device inside the rank: 'cpu', or 'cuda:<i>' (i = local rank in a multi-rank job; the visible
    index in a single process, 0 for a MIG instance, which the rank narrows CUDA_VISIBLE_DEVICES to)."""
    physical_gpu: str | None
    """The CUDA_VISIBLE_DEVICES entry of the rank's GPU (None on the CPU)."""
    seed: int


@dataclass(frozen=True)
class LaunchPlan:
    """Everything about the ranks resolved before any process starts."""

    name: str
    """What runs: the task trained, or the name of the function ``mjdist.launch`` calls."""
    launcher: Literal["in-process", "torchrunx", "environment"]
    """How the ranks start: 'in-process' (one rank, this process), 'torchrunx' (mjdist starts every rank), or
    'environment' (torchrun, OSMO or Kubernetes started this process as one rank; ``ranks`` lists only it)."""
    world_size: int
    backend: str | None
    """'nccl' (GPUs), 'gloo' (CPU workers) or None (a single process)."""
    ranks: tuple[RankPlan, ...]
    torchrunx_log_dir: str | None
    """Per-rank log files (None: single process, or disabled with '')."""
    torch_threads: int | None
    """torch intra-op threads per rank (1 per CPU worker unless OMP_NUM_THREADS is set; None: torch's default)."""
    hosts: tuple[str, ...] = (LOCALHOST,)
    """The hosts, in rank order (global rank = host index x ranks per host + local rank)."""
    ssh_config: str | None = None
    """OpenSSH client config torchrunx uses to reach the hosts (None: ~/.ssh/config)."""
    rank_environment: tuple[tuple[str, str], ...] = ()
    """Variables set in every rank's environment before its code runs (MuJoCo's rendering choice), never in the
    launching process's."""

    @property
    def ranks_per_host(self) -> int:
        """Ranks on each host (every host runs the same number)."""
        return self.world_size // len(self.hosts) if self.launcher == "torchrunx" else 1

    def rank_plan(self, rank: int) -> RankPlan:
        """The plan of global rank ``rank``."""
        (found,) = (plan for plan in self.ranks if plan.rank == rank)
        return found

    @property
    def rank_visible_devices(self) -> str | None:
        """CUDA_VISIBLE_DEVICES for the ranks: the selected GPUs in rank order, so that rank r's ``cuda:r`` is its GPU
        whatever initialized CUDA first (torchrunx creates the NCCL group before the rank's code runs), or the one
        selected MIG instance of a single process. None when the ranks keep the launcher's environment."""
        first_host = [rank for rank in self.ranks if rank.host == self.hosts[0]]  # every host gets the same GPUs
        gpus = [rank.physical_gpu for rank in first_host if rank.physical_gpu is not None]
        if self.launcher == "in-process" and gpus and gpus[0].startswith("MIG-"):
            return gpus[0]
        return ",".join(gpus) if self.launcher == "torchrunx" and gpus else None

    @property
    def rank_variables(self) -> dict[str, str]:
        """What every rank's environment gets beyond the launcher's: its GPUs (:attr:`rank_visible_devices`) and the
        plan's own variables (:attr:`rank_environment`)."""
        variables = dict(self.rank_environment)
        if self.rank_visible_devices:
            variables["CUDA_VISIBLE_DEVICES"] = self.rank_visible_devices
        return variables

    def to_json(self) -> dict:
        """The plan as plain JSON data."""
        return dataclasses.asdict(self)


def plan_ranks(
    name: str,
    selection: DeviceSelection,
    hosts: tuple[str, ...],
    seed: int,
    environ: Mapping[str, str],
    ssh_config: Path | None = None,
    torchrunx_log_dir: str | None = None,
    rank_environment: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """The ranks of ``selection`` repeated on every host, in host order (global rank = host index x ranks per host +
    local rank, seed = ``seed`` + global rank). ``torchrunx_log_dir`` is the chosen log directory ('' or None: no
    files); TORCHRUNX_LOG_DIR in ``environ``, if set, wins."""
    world_size = len(hosts) * selection.world_size
    in_process = world_size == 1 and hosts == (LOCALHOST,)  # one rank elsewhere still goes through torchrunx
    if len(hosts) > 1 and any(not gpu.isdigit() for gpu in selection.physical_gpus):
        raise DeviceSelectionError(
            f"--hosts with CUDA_VISIBLE_DEVICES naming UUIDs or MIG instances ({', '.join(selection.physical_gpus)}) "
            "cannot work: those name GPUs of this host only; use GPU indices (or unset CUDA_VISIBLE_DEVICES)"
        )
    ranks = tuple(
        RankPlan(
            rank=host_index * selection.world_size + local_rank,
            host=host,
            local_rank=local_rank,
            device=_rank_device(selection, local_rank, in_process),
            physical_gpu=selection.physical_gpus[local_rank] if selection.kind == "cuda" else None,
            seed=seed + host_index * selection.world_size + local_rank,
        )
        for host_index, host in enumerate(hosts)
        for local_rank in range(selection.world_size)
    )
    cpu_workers = selection.kind == "cpu" and selection.world_size > 1
    chosen_log_dir = environ.get("TORCHRUNX_LOG_DIR", torchrunx_log_dir)
    return LaunchPlan(
        name=name,
        launcher="in-process" if in_process else "torchrunx",
        world_size=world_size,
        backend=None if world_size == 1 else ("nccl" if selection.kind == "cuda" else "gloo"),
        ranks=ranks,
        torchrunx_log_dir=str(Path(chosen_log_dir).absolute()) if chosen_log_dir and not in_process else None,
        torch_threads=1 if cpu_workers and "OMP_NUM_THREADS" not in environ else None,
        hosts=hosts,
        ssh_config=str(ssh_config.absolute()) if ssh_config is not None and not in_process else None,
        rank_environment=tuple(sorted((rank_environment or {}).items())),
    )


def _rank_device(selection: DeviceSelection, local_rank: int, in_process: bool) -> str:
    if selection.kind == "cpu":
        return "cpu"
    if in_process:
        return "cuda:0" if selection.physical_gpus[0].startswith("MIG-") else f"cuda:{selection.visible_indices[0]}"
    return f"cuda:{local_rank}"  # ranks see exactly the selected GPUs, in rank order (see rank_visible_devices)


def plan_scheduler_rank(
    name: str, request: DeviceRequest, rank: RankIdentity, machine: Machine, seed: int
) -> LaunchPlan:
    """The plan of this one rank of a job a scheduler started (torchrun, OSMO, Kubernetes): on ``cuda:<LOCAL_RANK>``
    when GPUs are visible, else the CPU; seed = ``seed`` + RANK. DeviceSelectionError where the request contradicts
    the scheduler."""
    physical_gpu = _rank_gpu(request, rank, machine)
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
        name=name,
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
                seed=seed + rank.rank,
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
