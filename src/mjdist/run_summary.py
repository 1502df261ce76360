"""``<run dir>/summary.json``: one machine-readable record of how a training run went and how it ended.

Rank 0 rewrites it after every iteration with ``status: "running"`` (:func:`write_progress`), so that the
iterations and metrics survive however the run ends; the launching process writes the final record when the run
ends, finished, interrupted or failed (:func:`summary_on_exit`). Its field names are those of mjdist's other
results: ``task``, ``run_dir``, ``world_size``, ``devices``, ``hosts``, ``iterations``, ``wall_time_s``,
``env_steps_per_s``, ``mean_reward``, ``mean_episode_length``, ``checkpoints``, ``exports``,
``parameter_digest``, ``status`` and ``cause``.

Kept free of heavy imports: the launching process imports it before any rank starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mjdist.checkpoints import CHECKPOINT_NAME, CheckpointError, checkpoint_iteration
from mjdist.errors import RankFailedError
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.worker import first_line
from mjdist.runs import EXPORT_DIR

SUMMARY_FILE = "summary.json"
Status = Literal["running", "finished", "interrupted", "failed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingMetrics:
    """How far training got and how it did, as seen by rank 0."""

    iterations: int = 0
    """PPO iterations completed in this run (a resumed run counts only its own)."""
    env_steps_per_s: float | None = None
    """Environment steps of all ranks per second of collection and learning, over the run (warm-up included)."""
    mean_reward: float | None = None
    """Mean return of the last 100 episodes that finished on rank 0 (None before the first one)."""
    mean_episode_length: float | None = None
    """Their mean length in control steps."""


@dataclass
class RunEnd:
    """How the run ended, filled in by the train flow (or by :func:`summary_on_exit` for exceptions)."""

    status: Status | None = None
    cause: str | None = None
    parameter_digest: str | None = None

    def finished(self, parameter_digest: str) -> None:
        """Every rank finished with these (identical) parameters."""
        self.status, self.cause, self.parameter_digest = "finished", None, parameter_digest

    def failed(self, cause: str) -> None:
        """The run failed; ``cause`` is one line."""
        self.status, self.cause = "failed", cause


def write_progress(plan: LaunchPlan, metrics: TrainingMetrics, wall_time_s: float) -> None:
    """Rank 0, after each iteration: the summary so far, with ``status: "running"``."""
    _write(plan, _summary(plan, metrics, "running", None, wall_time_s, None))


@contextlib.contextmanager
def summary_on_exit(plan: LaunchPlan) -> Iterator[RunEnd]:
    """Write the final ``summary.json`` when the block ends, however it ends.

    The block reports a normal end through the yielded :class:`RunEnd`. An exception ends the run as
    ``interrupted`` (KeyboardInterrupt: Ctrl-C, SIGTERM, or the launcher's report that the ranks were stopped)
    or ``failed``, with the exception's first line as the cause, and propagates. A :class:`CheckpointError` is bad
    input refused before training began: nothing is written.
    """
    end = RunEnd()
    started = time.monotonic()
    try:
        yield end
    except CheckpointError:
        raise
    except BaseException as error:
        end.status, end.cause = _ended_by(error)
        raise
    finally:
        if end.status is not None and plan.ranks[0].rank == 0:  # under torchrun, rank 0's process alone writes
            metrics = _progress_so_far(plan)
            summary = _summary(plan, metrics, end.status, end.cause, time.monotonic() - started, end.parameter_digest)
            with contextlib.suppress(OSError):  # never hide how the run ended behind a failed write
                _write(plan, summary)
                log.info("Run summary (%s): %s", end.status, plan.run_dir_path / SUMMARY_FILE)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The ``summary.json`` of ``run_dir``."""
    return json.loads((run_dir / SUMMARY_FILE).read_text())


def _summary(
    plan: LaunchPlan,
    metrics: TrainingMetrics,
    status: Status,
    cause: str | None,
    wall_time_s: float,
    parameter_digest: str | None,
) -> dict[str, Any]:
    run_dir = plan.run_dir_path
    return {
        "task": plan.task,
        "run_dir": str(run_dir),
        "world_size": plan.world_size,
        "devices": [rank.device for rank in plan.ranks],
        "hosts": [platform.node()],
        **dataclasses.asdict(metrics),
        "wall_time_s": round(wall_time_s, 3),
        "checkpoints": [str(path) for path in _checkpoints(run_dir)],
        "exports": [str(path) for path in _exports(run_dir)],
        "parameter_digest": parameter_digest,
        "status": status,
        "cause": cause,
    }


def _progress_so_far(plan: LaunchPlan) -> TrainingMetrics:
    """The metrics rank 0 last wrote; none if it never completed an iteration."""
    try:
        written = read_summary(plan.run_dir_path)
    except (OSError, ValueError):
        return TrainingMetrics()
    return TrainingMetrics(**{field.name: written[field.name] for field in dataclasses.fields(TrainingMetrics)})


def _checkpoints(run_dir: Path) -> list[Path]:
    found = [path for path in run_dir.glob("model_*.pt") if CHECKPOINT_NAME.match(path.name)]
    return sorted(found, key=checkpoint_iteration)


def _exports(run_dir: Path) -> list[Path]:
    export_dir = run_dir / EXPORT_DIR
    return sorted(path for path in export_dir.glob("*") if path.is_file() and not path.name.startswith("."))


def _write(plan: LaunchPlan, summary: dict[str, Any]) -> None:
    """Replace ``summary.json`` at once, so that a reader never sees half a file."""
    path = plan.run_dir_path / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{SUMMARY_FILE}.partial")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(partial, path)


def _ended_by(error: BaseException) -> tuple[Status, str]:
    """Status and cause of a run ended by ``error``. The launcher's errors already name their cause (and rank);
    other errors are named by their type and first line."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", first_line(error) or "interrupted (Ctrl-C or SIGTERM)"
    if isinstance(error, RankFailedError):
        return "failed", first_line(error)
    return "failed", f"{type(error).__name__}: {first_line(error)}".rstrip(": ")
