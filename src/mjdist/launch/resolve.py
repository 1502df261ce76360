"""From the flags and this process's environment to a launch plan: as one rank of a job a scheduler started
(torchrun-style variables set), or as the launcher of every rank, on this host or on ``--hosts``."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path

from mjdist.config import TrainConfig
from mjdist.launch.devices import check_cpu_workers, resolve_devices
from mjdist.launch.hosts import resolve_hosts
from mjdist.launch.plan import LaunchPlan, make_plan
from mjdist.launch.rank_mode import EnvironmentRank, plan_environment_rank


def resolve_plan(
    task: str,
    cfg: TrainConfig,
    environ: Mapping[str, str],
    device_count: int,
    now: datetime.datetime,
    resume_from: Path | None,
    run_dir: Path | None = None,
) -> tuple[LaunchPlan, str | None]:
    """The plan and a notice for the user (or None); DeviceSelectionError for flags that cannot be resolved. The run
    goes to ``run_dir`` when given (a run continued in its own directory), else to a new timestamped one."""
    cuda_visible_devices = environ.get("CUDA_VISIBLE_DEVICES")
    environment_rank = EnvironmentRank.detect(environ)
    if environment_rank is not None:
        plan = plan_environment_rank(
            task, cfg, environment_rank, cuda_visible_devices, device_count, now, resume_from, run_dir
        )
        return plan, None
    selection = resolve_devices(
        gpu_ids=cfg.gpu_ids or None,
        cpu_workers=cfg.cpu_workers,
        cuda_visible_devices=cuda_visible_devices,
        device_count=device_count,
        cpu_count=len(os.sched_getaffinity(0)),
    )
    if not cfg.dry_run:  # a dry run may plan for a bigger machine
        check_cpu_workers(selection, len(os.sched_getaffinity(0)), cfg.oversubscribe)
    hosts = resolve_hosts(cfg.hosts, cfg.ssh_config)
    return make_plan(task, cfg, selection, environ, now, resume_from, run_dir, hosts), selection.notice
