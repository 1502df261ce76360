"""``train <task> [overrides]``: resolve devices and the run, then train on one or many ranks."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import sys
from pathlib import Path

from mjdist.checkpoints import CheckpointError, checkpoint_iteration, read_checkpoint, resolve_checkpoint
from mjdist.cli.usage import UsageError, fail_usage, parse_task_command
from mjdist.config import TrainConfig, check_run_options
from mjdist.launch.devices import (
    DeviceSelectionError,
    check_cpu_workers,
    check_gpus_exist,
    cuda_device_count,
    resolve_devices,
)
from mjdist.launch.plan import LaunchPlan, make_plan
from mjdist.launch.requeue import AUTO, find_continuation
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
    selection = resolve_devices(
        gpu_ids=cfg.gpu_ids or None,
        cpu_workers=cfg.cpu_workers,
        cuda_visible_devices=cuda_visible_devices,
        device_count=device_count,
        cpu_count=len(os.sched_getaffinity(0)),
    )
    check_run_options(cfg)
    run_dir, resume_from = _start_point(task, cfg)
    plan = make_plan(task, cfg, selection, os.environ, datetime.datetime.now(), resume_from, run_dir)
    if cfg.resume == AUTO:
        plan = dataclasses.replace(plan, end_iteration=cfg.agent.max_iterations)
    if not cfg.dry_run:
        if selection.kind == "cuda":
            check_gpus_exist(cuda_visible_devices, device_count)
        check_cpu_workers(selection, len(os.sched_getaffinity(0)), cfg.oversubscribe)
        check_writable(plan.run_dir_path)
    if selection.notice:
        log.info("%s", selection.notice)
    return plan


def _start_point(task: str, cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    """``(run_dir, resume_from)``: the named run's own directory and newest checkpoint under --resume auto
    (None, None for a run not started yet); a new run directory and --resume's checkpoint otherwise."""
    if cfg.resume == AUTO:
        found = find_continuation(cfg.log_root / cfg.agent.experiment_name, cfg.run_name, task)
        if found.resume_from is not None:
            log.info("Continuing run %s from %s (--resume auto)", found.run_dir, found.resume_from.name)
        return found.run_dir, found.resume_from
    return None, _checked_resume(task, cfg.resume) if cfg.resume is not None else None


def _checked_resume(task: str, resume: Path) -> Path:
    """The checkpoint to resume from, read once here so that a bad one is refused before anything starts."""
    checkpoint = resolve_checkpoint(resume, task)
    read_checkpoint(checkpoint, task)
    return checkpoint


def _train(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> int:
    from mjdist.launch.launcher import RankFailedError
    from mjdist.launch.restarts import train_with_restarts

    if _already_done(plan):
        log.info("Run %s already did its %d iterations; nothing to do", plan.run_dir, plan.end_iteration)
        return 0
    ranks = ", ".join(f"{r.rank}:{r.device}" for r in plan.ranks)
    log.info("Training %s on %d rank(s) [%s]; run directory: %s", plan.task, plan.world_size, ranks, plan.run_dir)
    try:
        results = train_with_restarts(plan, cfg, spec)
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


def _already_done(plan: LaunchPlan) -> bool:
    """A run continued by --resume auto whose newest checkpoint is its last iteration."""
    if plan.end_iteration is None or plan.resume_from is None:
        return False
    return checkpoint_iteration(Path(plan.resume_from)) + 1 >= plan.end_iteration


def run() -> None:
    """``train`` console script."""
    sys.exit(main())
