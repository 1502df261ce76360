"""Runs that survive: ``--max-restarts N`` and the requeue-safe ``--run-name NAME --resume auto``.

Both continue a run in its own directory from its newest loadable checkpoint: iteration numbers, checkpoint
names and TensorBoard steps carry on (TensorBoard drops the steps a restart repeats). Each restart is logged on
the console and appended to ``<run dir>/restarts.jsonl`` with its cause.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path

from mjdist.checkpoints import CheckpointError, newest_loadable_checkpoint
from mjdist.errors import RankFailedError
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig
from mjdist.train.plan import TrainPlan
from mjdist.train.result import RankResult

log = logging.getLogger(__name__)

RESTARTS_FILE = "restarts.jsonl"
"""One JSON object per restart: restart, max_restarts, time, cause, resumed_from, next_iteration."""


def next_iteration(plan: TrainPlan) -> int:
    """The iteration training starts at: the one after the checkpoint's, or 0."""
    return plan.resume_iteration + 1 if plan.resume_iteration is not None else 0


def with_end_iteration(plan: TrainPlan, max_iterations: int) -> TrainPlan:
    """The plan with its end iteration fixed, so that a restart trains only what is left."""
    if plan.end_iteration is not None:
        return plan
    return dataclasses.replace(plan, end_iteration=next_iteration(plan) + max_iterations)


def train_with_restarts(
    plan: TrainPlan,
    cfg: TrainConfig,
    spec: TaskSpec,
    run: Callable[[TrainPlan, TrainConfig, TaskSpec], list[RankResult]],
) -> list[RankResult]:
    """``run`` the plan; after a RankFailedError (an interrupt is a KeyboardInterrupt and ends it), run it again
    from the run's newest loadable checkpoint, up to ``cfg.max_restarts`` times. The last failure, if any, is raised
    with the restart count."""
    plan = with_end_iteration(plan, cfg.agent.max_iterations)
    initial = plan
    for restart in range(cfg.max_restarts + 1):
        try:
            return run(plan, cfg, spec)
        except RankFailedError as failure:
            if restart == cfg.max_restarts:
                if restart:
                    raise RankFailedError(f"{failure} (after {restart} restart(s))", failure.rank) from failure
                raise
            plan = _restart_plan(plan, spec, initial)
            _record(plan, restart + 1, cfg.max_restarts, str(failure))
    raise AssertionError("unreachable")


def _restart_plan(plan: TrainPlan, spec: TaskSpec, initial: TrainPlan) -> TrainPlan:
    try:
        checkpoint = newest_loadable_checkpoint(plan.run_dir_path, spec.name)
    except CheckpointError:  # failed before its first checkpoint: start again where it started
        return dataclasses.replace(
            plan,
            resume_from=initial.resume_from,
            resume_iteration=initial.resume_iteration,
            resume_rank=initial.resume_rank,
            continued_from=initial.continued_from,
        )
    return dataclasses.replace(  # the launcher's run directory: rank 0's, which reads it
        plan,
        resume_from=str(checkpoint.path),
        resume_iteration=checkpoint.iteration,
        resume_rank=0,
        continued_from=None,
    )


def _record(plan: TrainPlan, restart: int, max_restarts: int, cause: str) -> None:
    start = f"from {Path(plan.resume_from).name}" if plan.resume_from is not None else "from scratch"
    log.warning(
        "Restart %d/%d after: %s; continuing %s at iteration %d of %s",
        restart, max_restarts, cause, start, next_iteration(plan) + 1, plan.end_iteration,
    )  # fmt: skip
    record = {
        "restart": restart,
        "max_restarts": max_restarts,
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cause": cause,
        "resumed_from": plan.resume_from,
        "next_iteration": next_iteration(plan),
    }
    plan.run_dir_path.mkdir(parents=True, exist_ok=True)
    with open(plan.run_dir_path / RESTARTS_FILE, "a") as restarts:
        restarts.write(json.dumps(record) + "\n")
