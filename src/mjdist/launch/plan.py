"""The launch plan: every rank's device and seed, the backend, the run and log directories.

Computed once, in the launching process, from the CLI config, the device selection and the environment;
pure data, printed by ``--dry-run`` and handed to every rank.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mjdist.config import TrainConfig
from mjdist.launch.devices import DeviceSelection
from mjdist.launch.hosts import LOCALHOST
from mjdist.runs import run_dir_for


@dataclass(frozen=True)
class RankPlan:
    """What one rank runs on."""

    rank: int
    host: str
    """The host the rank runs on ('localhost' for a single-host launch)."""
    local_rank: int
    device: str
    """torch/Warp device inside the rank: 'cpu', or 'cuda:<i>' (in a multi-rank job, i = local rank)."""
    physical_gpu: str | None
    """The CUDA_VISIBLE_DEVICES entry of the rank's GPU (None on the CPU)."""
    seed: int


@dataclass(frozen=True)
class LaunchPlan:
    """Everything resolved before any process starts."""

    task: str
    """The task trained (for ``mjdist.launch``: the function's name)."""
    launcher: Literal["in-process", "torchrunx", "environment"]
    """How the ranks start: 'in-process' (one rank, this process), 'torchrunx' (mjdist starts every rank), or
    'environment' (torchrun, OSMO or Kubernetes started this process as one rank; ``ranks`` lists only it)."""
    world_size: int
    backend: str | None
    """'nccl' (GPUs), 'gloo' (CPU workers) or None (a single process)."""
    ranks: tuple[RankPlan, ...]
    run_dir: str
    """The run directory rank 0 writes ('' for ``mjdist.launch``, which has none)."""
    torchrunx_log_dir: str | None
    """Per-rank log files (None: single process, or disabled with '')."""
    torch_threads: int | None
    """torch intra-op threads per rank (1 per CPU worker unless OMP_NUM_THREADS is set; None: torch's default)."""
    resume_from: str | None = None
    """Checkpoint every rank loads before training (None: start from scratch)."""
    end_iteration: int | None = None
    """Iterations done when training stops, counting those before resume_from (None: --agent.max-iterations more
    than resume_from's). Set when a run continues in its own directory (restarts, --resume auto)."""
    hosts: tuple[str, ...] = ("localhost",)
    """The hosts, in rank order (global rank = host index x ranks per host + local rank)."""
    ssh_config: str | None = None
    """OpenSSH client config torchrunx uses to reach the hosts (None: ~/.ssh/config)."""

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
        """CUDA_VISIBLE_DEVICES for the ranks of a multi-GPU job: the selected GPUs in rank order, so that
        rank r's ``cuda:r`` is its GPU whatever initialized CUDA first (torchrunx creates the NCCL group
        before the rank's code runs). None when the ranks keep the launcher's environment."""
        first_host = [rank for rank in self.ranks if rank.host == self.hosts[0]]  # every host gets the same GPUs
        gpus = [rank.physical_gpu for rank in first_host if rank.physical_gpu is not None]
        return ",".join(gpus) if self.launcher == "torchrunx" and gpus else None

    @property
    def run_dir_path(self) -> Path:
        """``run_dir`` as a Path."""
        return Path(self.run_dir)

    def to_json(self) -> dict:
        """The plan as plain JSON data (the --dry-run output)."""
        return dataclasses.asdict(self)


def make_plan(
    task: str,
    cfg: TrainConfig,
    selection: DeviceSelection,
    environ: Mapping[str, str],
    now: datetime.datetime,
    resume_from: Path | None = None,
    run_dir: Path | None = None,
    hosts: tuple[str, ...] = (LOCALHOST,),
) -> LaunchPlan:
    """Resolve devices, seeds and directories for every rank, a new run directory unless ``run_dir`` is given:
    the selection repeats on every host, in host order (global rank = host index x ranks per host + local rank)."""
    run_dir = run_dir or run_dir_for(cfg.log_root, cfg.agent.experiment_name, cfg.run_name, now)
    plan = _host_plan(task, selection, hosts, cfg.agent.seed, environ, cfg.ssh_config)
    return dataclasses.replace(
        plan,
        run_dir=str(run_dir),
        torchrunx_log_dir=None if plan.launcher == "in-process" else _torchrunx_log_dir(cfg, run_dir, environ),
        resume_from=str(resume_from.absolute()) if resume_from is not None else None,
    )


def make_function_plan(
    name: str,
    selection: DeviceSelection,
    environ: Mapping[str, str],
    seed: int,
    torchrunx_log_dir: str | None,
    hosts: tuple[str, ...] = (LOCALHOST,),
    ssh_config: Path | None = None,
) -> LaunchPlan:
    """The plan of ``mjdist.launch(fn)``: hosts, ranks, seeds and threads as for training, no run directory
    (``run_dir`` is ''), and per-rank log files only where ``torchrunx_log_dir`` (or TORCHRUNX_LOG_DIR, which
    wins) says."""
    plan = _host_plan(name, selection, hosts, seed, environ, ssh_config)
    chosen = environ.get("TORCHRUNX_LOG_DIR", torchrunx_log_dir)
    in_process = plan.launcher == "in-process"
    return dataclasses.replace(
        plan, torchrunx_log_dir=str(Path(chosen).absolute()) if chosen and not in_process else None
    )


def _host_plan(
    task: str,
    selection: DeviceSelection,
    hosts: tuple[str, ...],
    seed: int,
    environ: Mapping[str, str],
    ssh_config: Path | None,
) -> LaunchPlan:
    """The ranks of ``selection`` repeated on every host, in host order; no run or log directory yet."""
    world_size = len(hosts) * selection.world_size
    in_process = world_size == 1 and hosts == (LOCALHOST,)  # one rank elsewhere still goes through torchrunx
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
    return LaunchPlan(
        task=task,
        launcher="in-process" if in_process else "torchrunx",
        world_size=world_size,
        backend=None if world_size == 1 else ("nccl" if selection.kind == "cuda" else "gloo"),
        ranks=ranks,
        run_dir="",
        torchrunx_log_dir=None,
        torch_threads=1 if cpu_workers and "OMP_NUM_THREADS" not in environ else None,
        hosts=hosts,
        ssh_config=str(ssh_config.absolute()) if ssh_config is not None and not in_process else None,
    )


def _rank_device(selection: DeviceSelection, local_rank: int, in_process: bool) -> str:
    if selection.kind == "cpu":
        return "cpu"
    if in_process:
        return f"cuda:{selection.visible_indices[0]}"
    return f"cuda:{local_rank}"  # ranks see exactly the selected GPUs, in rank order (see rank_visible_devices)


def _torchrunx_log_dir(cfg: TrainConfig, run_dir: Path, environ: Mapping[str, str]) -> str | None:
    if "TORCHRUNX_LOG_DIR" in environ:
        chosen = environ["TORCHRUNX_LOG_DIR"]
    elif cfg.torchrunx_log_dir is not None:
        chosen = cfg.torchrunx_log_dir
    else:
        chosen = str(run_dir / "torchrunx")
    return str(Path(chosen).absolute()) if chosen else None
