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

from mjdist.config import TrainConfig
from mjdist.launch.devices import DeviceSelection
from mjdist.runs import run_dir_for


@dataclass(frozen=True)
class RankPlan:
    """What one rank runs on."""

    rank: int
    local_rank: int
    device: str
    """torch/Warp device inside the rank: 'cpu', or 'cuda:<i>' (in a multi-GPU job, i = local rank)."""
    physical_gpu: str | None
    """The CUDA_VISIBLE_DEVICES entry of the rank's GPU (None on the CPU)."""
    seed: int


@dataclass(frozen=True)
class LaunchPlan:
    """Everything resolved before any process starts."""

    task: str
    """The task trained (for ``mjdist.launch``: the function's name)."""
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

    @property
    def rank_visible_devices(self) -> str | None:
        """CUDA_VISIBLE_DEVICES for the ranks of a multi-GPU job: the selected GPUs in rank order, so that
        rank r's ``cuda:r`` is its GPU whatever initialized CUDA first (torchrunx creates the NCCL group
        before the rank's code runs). None when the ranks keep the launcher's environment."""
        gpus = [rank.physical_gpu for rank in self.ranks if rank.physical_gpu is not None]
        return ",".join(gpus) if self.world_size > 1 and gpus else None

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
) -> LaunchPlan:
    """Resolve devices, seeds and directories for every rank."""
    run_dir = run_dir_for(cfg.log_root, cfg.agent.experiment_name, cfg.run_name, now)
    return LaunchPlan(
        task=task,
        world_size=selection.world_size,
        backend=selection.backend,
        ranks=_rank_plans(selection, cfg.agent.seed),
        run_dir=str(run_dir),
        torchrunx_log_dir=_torchrunx_log_dir(cfg, selection.world_size, run_dir, environ),
        torch_threads=_torch_threads(selection, environ),
        resume_from=str(resume_from.absolute()) if resume_from is not None else None,
    )


def make_function_plan(
    name: str, selection: DeviceSelection, environ: Mapping[str, str], seed: int, torchrunx_log_dir: str | None
) -> LaunchPlan:
    """The plan of ``mjdist.launch(fn)``: ranks, seeds and threads as for training, no run directory (``run_dir``
    is ''), and per-rank log files only where ``torchrunx_log_dir`` (or TORCHRUNX_LOG_DIR, which wins) says."""
    chosen = environ.get("TORCHRUNX_LOG_DIR", torchrunx_log_dir)
    return LaunchPlan(
        task=name,
        world_size=selection.world_size,
        backend=selection.backend,
        ranks=_rank_plans(selection, seed),
        run_dir="",
        torchrunx_log_dir=str(Path(chosen).absolute()) if chosen and selection.world_size > 1 else None,
        torch_threads=_torch_threads(selection, environ),
    )


def _rank_plans(selection: DeviceSelection, seed: int) -> tuple[RankPlan, ...]:
    return tuple(
        RankPlan(
            rank=rank,
            local_rank=rank,
            device=_rank_device(selection, rank),
            physical_gpu=selection.physical_gpus[rank] if selection.kind == "cuda" else None,
            seed=seed + rank,
        )
        for rank in range(selection.world_size)
    )


def _torch_threads(selection: DeviceSelection, environ: Mapping[str, str]) -> int | None:
    cpu_workers = selection.kind == "cpu" and selection.world_size > 1
    return 1 if cpu_workers and "OMP_NUM_THREADS" not in environ else None


def _rank_device(selection: DeviceSelection, rank: int) -> str:
    if selection.kind == "cpu":
        return "cpu"
    if selection.world_size == 1:
        return f"cuda:{selection.visible_indices[0]}"
    return f"cuda:{rank}"  # ranks see exactly the selected GPUs, in rank order (see rank_visible_devices)


def _torchrunx_log_dir(cfg: TrainConfig, world_size: int, run_dir: Path, environ: Mapping[str, str]) -> str | None:
    if world_size == 1:
        return None
    if "TORCHRUNX_LOG_DIR" in environ:
        chosen = environ["TORCHRUNX_LOG_DIR"]
    elif cfg.torchrunx_log_dir is not None:
        chosen = cfg.torchrunx_log_dir
    else:
        chosen = str(run_dir / "torchrunx")
    return str(Path(chosen).absolute()) if chosen else None
