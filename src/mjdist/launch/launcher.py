"""Run a plan: in this process for one rank, through torchrunx for several; end every process on failure."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psutil
import torchrunx

from mjdist.config import TrainConfig
from mjdist.launch.context import RankResult
from mjdist.launch.log_routing import log_handlers
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.worker import pack_job, run_worker
from mjdist.tasks import TaskSpec

log = logging.getLogger(__name__)

ENV_VARS_FOR_RANKS = (
    *torchrunx.DEFAULT_ENV_VARS_FOR_COPY,
    "MUJOCO*",
    "WARP*",
    "WANDB*",
    "OMP_NUM_THREADS",
    "HOME",
)
"""Variables the ranks need, copied explicitly so they also reach ranks on other hosts."""
CLEANUP_GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36


class RankFailedError(RuntimeError):
    """A rank raised, was killed, or the job was interrupted; the message names the first failure."""

    def __init__(self, message: str, interrupted: bool = False) -> None:
        super().__init__(message)
        self.interrupted = interrupted


def launch(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Train on every rank of the plan and return their results in rank order."""
    if plan.world_size == 1:
        from mjdist.launch.rank import train_rank  # the launcher of several ranks never needs it

        return [train_rank(plan, cfg, spec)]
    return _launch_ranks(plan, cfg, spec)


def _launch_ranks(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    with tempfile.NamedTemporaryFile(prefix="mjdist-failures-", suffix=".log") as failure_file:
        launcher = torchrunx.Launcher(
            hostnames=["localhost"],
            workers_per_host=plan.world_size,
            backend=plan.backend,  # type: ignore[arg-type]
            copy_env_vars=ENV_VARS_FOR_RANKS,
        )
        launcher.set_logging_handlers(
            partial(log_handlers, ["localhost"], [plan.world_size], plan.torchrunx_log_dir, failure_file.name)
        )
        log.info("Launching %d ranks (%s) through torchrunx", plan.world_size, plan.backend)
        try:
            with _sigterm_as_interrupt(), _no_orphans():
                result = launcher.run(run_worker, pack_job(plan, cfg, spec))
        except KeyboardInterrupt as interrupt:
            raise RankFailedError("interrupted; every rank was stopped", interrupted=True) from interrupt
        except Exception as error:
            raise RankFailedError(_first_failure(Path(failure_file.name), error)) from error
    return [result.rank(rank) for rank in range(plan.world_size)]


def _first_failure(failure_file: Path, error: Exception) -> str:
    """The first rank that reported a failure; else what torchrunx says (a killed worker reports nothing)."""
    reported = failure_file.read_text().splitlines() if failure_file.exists() else []
    if reported and "interrupted" not in reported[0]:
        return reported[0]
    details = str(error).strip().splitlines()
    return f"{type(error).__name__}: {details[0] if details else 'a worker process died'}"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so the same clean-up runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _no_orphans() -> Iterator[None]:
    """After the launch, however it ends, stop every process it left (agents, workers, the log server).

    As a Linux child subreaper this process inherits descendants whose parent died, so they are found too.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    me = psutil.Process(os.getpid())
    before = {child.pid for child in me.children(recursive=True)}
    try:
        yield
    finally:
        leftovers = [child for child in me.children(recursive=True) if child.pid not in before]
        for child in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=CLEANUP_GRACE_S)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
