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
from mjdist.rendering import check_video_flags, choose_gl_backend
from mjdist.runs import check_writable, run_dir_for
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig, check_run_options
from mjdist.train.requeue import AUTO, find_continuation

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
    than resume_from's). Set when a run continues in its own directory (restarts, --resume auto)."""

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
    (with ``cfg.dry_run``, GPUs and the log root are not checked either: the plan may be for another machine)."""
    try:
        cfg.env.validate()
        cfg.agent.validate()
        check_run_options(cfg)
        if cfg.video:
            check_video_flags(cfg.video_length, cfg.video_width, cfg.video_height)
            if cfg.video_interval < 1:
                raise ValueError(f"--video-interval must be at least 1 iteration, got {cfg.video_interval}")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.video:
        spec.refuse("--video")
    continued_run, resume_from = _start_point(spec.name, cfg)
    run_dir = continued_run or run_dir_for(cfg.log_root, cfg.agent.experiment_name, cfg.run_name, now)
    launch, notice = _plan_launch(spec.name, cfg, request, machine, environ, run_dir)
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


def _start_point(task: str, cfg: TrainConfig) -> tuple[Path | None, Checkpoint | None]:
    """``(run_dir, resume_from)``: the named run's own directory and newest checkpoint under ``--resume auto``
    (None, None for a run not started yet); no directory yet and --resume's checkpoint otherwise."""
    if cfg.resume == AUTO:
        found = find_continuation(cfg.log_root / cfg.agent.experiment_name, cfg.run_name, task)
        if found.resume_from is not None:
            log.info("Continuing run %s from %s (--resume auto)", found.run_dir, found.resume_from.path.name)
        return found.run_dir, found.resume_from
    return None, resolve_checkpoint(cfg.resume, task) if cfg.resume is not None else None
