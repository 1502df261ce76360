"""The plan of a training run: the ranks' plan (:mod:`mjdist.launch.plan`) plus the run they train.

Made once, in the launching process (in rank mode, in each rank), from the config, the device request, this
machine and the environment; pure data, printed by ``--dry-run``, written to ``params/launch.yaml`` and handed to
every rank. Planning checks everything it can and changes nothing: no directory is made, no variable is set.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mjdist.checkpoints import Checkpoint, resolve_checkpoint
from mjdist.envs.config import EnvConfig
from mjdist.errors import ConfigError, UsageError
from mjdist.launch.devices import (
    DeviceRequest,
    DeviceSelectionError,
    check_cpu_workers,
    check_gpus_exist,
    resolve_devices,
)
from mjdist.launch.hosts import resolve_hosts
from mjdist.launch.identity import RankIdentity
from mjdist.launch.machine import Machine
from mjdist.launch.plan import LaunchPlan, plan_ranks, plan_scheduler_rank
from mjdist.launch.preflight import check_launch
from mjdist.rendering import choose_gl_backend
from mjdist.rl.config import SEED_MAX
from mjdist.runs import check_writable, run_dir_for
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig, check_run_options
from mjdist.train.memory import MemoryEstimate, check_memory, estimate_rank_memory
from mjdist.train.requeue import AUTO, find_continuation, newest_run_dir

log = logging.getLogger("mjdist.train")


@dataclass(frozen=True)
class TrainPlan:
    """A training run's ranks and its run: where it goes, where it starts, where it ends."""

    launch: LaunchPlan
    """The ranks: hosts, devices, seeds, backend, threads, log files."""
    run_dir: str
    """The run directory global rank 0 writes."""
    resume_from: str | None = None
    """Checkpoint every rank loads before training (None: start from scratch)."""
    resume_iteration: int | None = None
    """The iteration resume_from was saved after, from its state (None: start from scratch)."""
    end_iteration: int | None = None
    """Iterations done when training stops, counting those before resume_from (None: --agent.max-iterations more
    than resume_from's). Set when a run continues in its own directory (restarts, --resume auto), and in rank mode."""
    resume_rank: int = 0
    """The global rank that reads resume_from from its own disk and sends its state to the others; in rank mode the
    rank that found the newest checkpoint (:mod:`mjdist.train.resume_point`)."""
    continued_from: str | None = None
    """``host:directory`` that resume_from lies in, where that is not run_dir on rank 0's host (rank mode without
    shared storage, after rank 0 moved to another node); None otherwise."""
    memory_per_rank_bytes: int | None = None
    """Estimated peak memory of one rank (host memory on the CPU, device memory on a GPU); see train/memory.py."""

    @property
    def task(self) -> str:
        """The task trained."""
        return self.launch.name

    @property
    def run_dir_path(self) -> Path:
        """``run_dir`` as a Path."""
        return Path(self.run_dir)

    def to_json(self) -> dict:
        """The plan as plain JSON data (what --dry-run prints and params/launch.yaml holds)."""
        launch = self.launch.to_json()
        return {"task": launch.pop("name"), **launch, **{field.name: getattr(self, field.name)
                for field in dataclasses.fields(self) if field.name != "launch"}}  # fmt: skip


def plan_training(
    spec: TaskSpec,
    cfg: TrainConfig,
    request: DeviceRequest,
    machine: Machine,
    environ: Mapping[str, str],
    now: datetime.datetime,
) -> TrainPlan:
    """Check the configs, resolve the devices and the run directory; a UsageError for bad input. Creates nothing
    (with ``cfg.dry_run``, GPUs, the log directories and the hosts are not checked either: the plan may be for
    another machine)."""
    try:
        cfg.env.validate()
        cfg.agent.validate()
        check_run_options(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.video:
        spec.refuse("--video")
    in_rank_mode = RankIdentity.from_scheduler(environ) is not None
    continued_run, resume_from = _own_run(cfg) if in_rank_mode else _start_point(spec.name, cfg)
    run_dir = continued_run or run_dir_for(cfg.log_root, cfg.agent.experiment_name, cfg.run_name, now)
    launch, notice = _plan_launch(spec.name, cfg, request, machine, environ, run_dir)
    check_seeds(launch)
    plan = TrainPlan(
        launch,
        str(run_dir),
        str(resume_from.path) if resume_from is not None else None,
        resume_from.iteration if resume_from is not None else None,
        cfg.agent.max_iterations if cfg.resume == AUTO else None,
    )
    if not cfg.dry_run:
        if any(rank.physical_gpu is not None for rank in launch.ranks):
            check_gpus_exist(machine)
        if launch.ranks[0].rank == 0:  # in rank mode only rank 0 writes, and only its host must allow it
            try:
                check_writable(plan.run_dir_path)
            except ValueError as error:
                raise UsageError(str(error)) from None
        check_launch(launch, environ, cfg.host_check)
    memory = _memory_estimate(spec, cfg, launch)
    if memory is not None:
        plan = dataclasses.replace(plan, memory_per_rank_bytes=memory.rank_bytes)
        if not (cfg.dry_run or cfg.skip_memory_check):
            check_memory(launch, memory, machine)
    if cfg.video and not cfg.dry_run:  # rank 0 renders (RenderingUnavailable: exit 2)
        rendering = choose_gl_backend(launch.ranks[0].device, launch.rank_visible_devices, environ)
        launch = dataclasses.replace(launch, rank_environment=tuple(sorted(rendering.items())))
        plan = dataclasses.replace(plan, launch=launch)
    if notice:
        log.info("%s", notice)
    return plan


def _plan_launch(
    task: str,
    cfg: TrainConfig,
    request: DeviceRequest,
    machine: Machine,
    environ: Mapping[str, str],
    run_dir: Path,
) -> tuple[LaunchPlan, str | None]:
    """The ranks, as one rank of a job a scheduler started (torchrun-style variables set), or as the launcher of
    every rank, on this host or on ``--hosts``; and a notice for the user (or None)."""
    scheduler_rank = RankIdentity.from_scheduler(environ)
    if scheduler_rank is not None:
        if cfg.hosts:
            raise DeviceSelectionError(
                f"--hosts {' '.join(cfg.hosts)} contradicts {scheduler_rank.describe()}: your launcher already "
                "started every rank; drop --hosts"
            )
        return plan_scheduler_rank(task, request, scheduler_rank, machine, cfg.agent.seed), None
    selection = resolve_devices(request, machine)
    if not cfg.dry_run:  # a dry run may plan for a bigger machine
        check_cpu_workers(selection, machine, cfg.oversubscribe)
    hosts = resolve_hosts(cfg.hosts, cfg.ssh_config)
    log_dir = str(run_dir / "torchrunx") if cfg.torchrunx_log_dir is None else cfg.torchrunx_log_dir
    launch = plan_ranks(task, selection, hosts, cfg.agent.seed, environ, cfg.ssh_config, log_dir)
    return launch, selection.notice


def _own_run(cfg: TrainConfig) -> tuple[Path | None, None]:
    """A rank's run directory in rank mode: under ``--resume auto`` the named run's newest directory on this node,
    if any. The checkpoint to start from is chosen once the ranks have joined the job (see
    :func:`mjdist.train.resume_point.agree_on_start`), since each node may hold another one, or none."""
    if cfg.resume == AUTO:
        return newest_run_dir(cfg.log_root / cfg.agent.experiment_name, cfg.run_name), None
    return None, None


def check_seeds(launch: LaunchPlan) -> None:
    """A ConfigError unless every rank's seed (--agent.seed + rank) is one that NumPy, torch and Warp all take."""
    highest = max(rank.seed for rank in launch.ranks)
    if highest > SEED_MAX:
        raise ConfigError(
            f"--agent.seed must be at most {SEED_MAX - launch.world_size + 1} with {launch.world_size} ranks "
            f"(rank r is seeded with seed + r, at most {SEED_MAX}), got {highest - launch.ranks[-1].rank}"
        )


def _memory_estimate(spec: TaskSpec, cfg: TrainConfig, launch: LaunchPlan) -> MemoryEstimate | None:
    """One rank's estimate (its model read in another process); None for a task whose configs are not mjdist's
    (mjlab's: docs/mjlab.md)."""
    if not isinstance(cfg.env, EnvConfig):
        return None
    return estimate_rank_memory(spec.model_path(), cfg.env, cfg.agent, _on_gpu(launch))


def _on_gpu(launch: LaunchPlan) -> bool:
    return launch.ranks[0].physical_gpu is not None


def _start_point(task: str, cfg: TrainConfig) -> tuple[Path | None, Checkpoint | None]:
    """``(run_dir, resume_from)``: the named run's own directory and newest checkpoint under ``--resume auto``
    (None, None for a run not started yet); no directory yet and --resume's checkpoint otherwise."""
    if cfg.resume == AUTO:
        found = find_continuation(cfg.log_root / cfg.agent.experiment_name, cfg.run_name, task)
        return found.run_dir, found.resume_from
    return None, resolve_checkpoint(cfg.resume, task) if cfg.resume is not None else None
