"""``<run dir>/summary.json``: one machine-readable record of how a training run went and how it ended.

Rank 0 rewrites it after every iteration with ``status: "running"`` (:func:`write_progress`), so that the
iterations and metrics survive however the run ends; the launching process writes the final record when the run
ends, finished, interrupted or failed (:func:`summary_on_exit`). Its field names are those of mjdist's other
results: ``task``, ``run_dir``, ``world_size``, ``devices``, ``hosts``, ``iterations``, ``wall_time_s``,
``env_steps_per_s``, ``mean_reward``, ``mean_episode_length``, ``checkpoints``, ``exports``,
``parameter_digest`` (and ``rank_digests``, each rank's, in rank order), ``status``, ``cause`` and
``continued_from`` (``host:directory`` of the checkpoint the run continued from when that lies outside the run's
own directory on rank 0's host, else null). It is strict
JSON: a number that is not finite is written as null.

Kept free of heavy imports: the launching process imports it before any rank starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mjdist.atomic_files import write_bytes_atomically
from mjdist.checkpoints import CheckpointError, list_checkpoints
from mjdist.errors import RankFailedError
from mjdist.launch.identity import RankIdentity
from mjdist.launch.worker import first_line
from mjdist.rl.metrics import TrainingMetrics
from mjdist.runs import list_exports

if TYPE_CHECKING:
    from mjdist.train.plan import TrainPlan

SUMMARY_FILE = "summary.json"
Status = Literal["running", "finished", "interrupted", "failed"]

log = logging.getLogger(__name__)


@dataclass
class RunEnd:
    """How the run ended, filled in by the train flow (or by :func:`summary_on_exit` for exceptions)."""

    status: Status | None = None
    cause: str | None = None
    parameter_digest: str | None = None
    rank_digests: tuple[str, ...] = ()

    def finished(self, rank_digests: Sequence[str]) -> None:
        """Every rank finished, each with these parameters (in rank order; all equal)."""
        self.status, self.cause = "finished", None
        self.parameter_digest, self.rank_digests = rank_digests[0], tuple(rank_digests)


def write_progress(plan: TrainPlan, metrics: TrainingMetrics, wall_time_s: float) -> None:
    """Rank 0, after each iteration: the summary so far, with ``status: "running"``."""
    _write(plan, _summary(plan, metrics, "running", None, wall_time_s, RunEnd()))


@contextlib.contextmanager
def summary_on_exit(plan: TrainPlan) -> Iterator[RunEnd]:
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
        if end.status is not None and _writes_the_run(plan):
            metrics = _progress_so_far(plan)
            summary = _summary(plan, metrics, end.status, end.cause, time.monotonic() - started, end)
            with contextlib.suppress(OSError):  # never hide how the run ended behind a failed write
                _write(plan, summary)
                log.info("Run summary (%s): %s", end.status, plan.run_dir_path / SUMMARY_FILE)


def _writes_the_run(plan: TrainPlan) -> bool:
    """Whether this process writes the run's summary: the launching process, or under torchrun global rank 0's."""
    return plan.launch.launcher != "environment" or RankIdentity.read().rank == 0


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The ``summary.json`` of ``run_dir``."""
    return json.loads((run_dir / SUMMARY_FILE).read_text())


def _summary(
    plan: TrainPlan,
    metrics: TrainingMetrics,
    status: Status,
    cause: str | None,
    wall_time_s: float,
    end: RunEnd,
) -> dict[str, Any]:
    run_dir = plan.run_dir_path
    return {
        "task": plan.task,
        "run_dir": str(run_dir),
        "world_size": plan.launch.world_size,
        "devices": [rank.device for rank in plan.launch.ranks],
        "hosts": list(plan.launch.hosts),
        **dataclasses.asdict(metrics),
        "wall_time_s": round(wall_time_s, 3),
        "checkpoints": [str(path) for path in list_checkpoints(run_dir)],
        "exports": [str(path) for path in list_exports(run_dir)],
        "parameter_digest": end.parameter_digest,
        "rank_digests": list(end.rank_digests),
        "status": status,
        "cause": cause,
        "continued_from": plan.continued_from,
    }


def _progress_so_far(plan: TrainPlan) -> TrainingMetrics:
    """The metrics rank 0 last wrote; none if it never completed an iteration."""
    try:
        written = read_summary(plan.run_dir_path)
    except (OSError, ValueError):
        return TrainingMetrics()
    return TrainingMetrics(**{field.name: written[field.name] for field in dataclasses.fields(TrainingMetrics)})


def _write(plan: TrainPlan, summary: dict[str, Any]) -> None:
    """Replace ``summary.json`` at once, so that a reader never sees half a file."""
    plan.run_dir_path.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite_or_null(summary), indent=2, allow_nan=False) + "\n"
    write_bytes_atomically(plan.run_dir_path / SUMMARY_FILE, text.encode())


def _finite_or_null(value: Any) -> Any:
    """``value`` with NaN and infinite numbers as None: strict JSON has no literal for them (a diverged run's mean
    reward may be NaN), and ``json.dumps`` would write ``NaN``, which strict parsers refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value


def _ended_by(error: BaseException) -> tuple[Status, str]:
    """Status and cause of a run ended by ``error``. The launcher's errors already name their cause (and rank);
    other errors are named by their type and first line."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", first_line(error) or "interrupted (Ctrl-C or SIGTERM)"
    if isinstance(error, RankFailedError):
        return "failed", first_line(error)
    return "failed", f"{type(error).__name__}: {first_line(error)}".rstrip(": ")
