"""``train <task> [overrides]``: resolve devices and the run, then train on one or many ranks."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from pathlib import Path

from mjdist.checkpoints import CheckpointError, read_checkpoint, resolve_checkpoint
from mjdist.cli.usage import UsageError, fail_usage, parse_task_command
from mjdist.config import TrainConfig
from mjdist.launch.devices import DeviceSelectionError, check_gpus_exist, cuda_device_count
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.resolve import resolve_plan
from mjdist.runs import check_writable
from mjdist.tasks import TaskSpec

log = logging.getLogger("mjdist.train")

PROG = "train"


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``train``."""
    try:
        spec, cfg = parse_task_command(
            PROG, argv, TrainConfig, lambda spec: TrainConfig(env=spec.env, agent=spec.agent)
        )
    except UsageError as error:
        return fail_usage(PROG, str(error))
    try:
        plan = _plan(spec.name, cfg)
    except (ValueError, DeviceSelectionError) as error:
        return fail_usage(PROG, str(error))
    if cfg.dry_run:
        print(json.dumps(plan.to_json()))
        return 0
    return _train(plan, cfg, spec)


def _plan(task: str, cfg: TrainConfig) -> LaunchPlan:
    cfg.env.validate()
    cfg.agent.validate()
    cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    device_count = cuda_device_count(cuda_visible_devices)
    resume_from = _checked_resume(task, cfg.resume) if cfg.resume is not None else None
    plan, notice = resolve_plan(task, cfg, os.environ, device_count, datetime.datetime.now(), resume_from)
    if not cfg.dry_run:
        if any(rank.physical_gpu is not None for rank in plan.ranks):
            check_gpus_exist(cuda_visible_devices, device_count)
        if plan.ranks[0].rank == 0:  # in rank mode only rank 0 writes, and only its host must allow it
            check_writable(plan.run_dir_path)
    if notice:
        log.info("%s", notice)
    return plan


def _checked_resume(task: str, resume: Path) -> Path:
    """The checkpoint to resume from, read once here so that a bad one is refused before anything starts."""
    checkpoint = resolve_checkpoint(resume)
    read_checkpoint(checkpoint, task)
    return checkpoint


def _train(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> int:
    from mjdist.launch.launcher import RankFailedError, launch

    ranks = ", ".join(f"{r.rank}:{r.device}" for r in plan.ranks)
    log.info("Training %s on %d rank(s) [%s]; run directory: %s", plan.task, plan.world_size, ranks, plan.run_dir)
    try:
        results = launch(plan, cfg, spec)
    except CheckpointError as error:
        return fail_usage(PROG, str(error))
    except KeyboardInterrupt:
        log.error("Interrupted.")
        return 130
    except RankFailedError as failure:
        log.error("Training failed: %s", failure)
        return 130 if failure.interrupted else 1
    digests = {result.parameter_digest for result in results}
    if len(digests) > 1:
        log.error("Ranks ended with different parameters; gradient averaging is broken: %s", sorted(digests))
        return 1
    if plan.world_size > 1:
        log.info("All %d ranks ended with identical parameters (sha256 %s)", plan.world_size, digests.pop()[:12])
    log.info("Done: %d iterations; checkpoints, configs and logs in %s", cfg.agent.max_iterations, plan.run_dir)
    return 0


def run() -> None:
    """``train`` console script."""
    sys.exit(main())
