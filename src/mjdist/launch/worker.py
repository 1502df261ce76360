"""Entry point of a torchrunx worker (and the guard of a rank torchrun started): die with the agent, and turn
any failure into a fast, loud exit.

torchrunx 0.4 returns a worker's exception as a value, so the agent keeps waiting for the other ranks,
which may be blocked in a collective until the process-group timeout. Exiting the process instead makes the
agent see a failed worker within a second and stop its siblings; the traceback is logged first, at
CRITICAL, so the launcher shows it on its console.

The job travels as the plan and, inside it, the rank function and its arguments as opaque bytes; this module
imports nothing heavy, so the torchrunx agent, which unpickles the job, does not import torch, Warp and the task
(seconds each) for nothing. The worker unpickles the rank function only once the rank is set up
(:func:`~mjdist.launch.bootstrap.enter_device`), so whatever it imports sees the rank's environment.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn, TypeVar

import cloudpickle

from mjdist.launch.identity import RankIdentity
from mjdist.launch.plan import LaunchPlan
from mjdist.signals import raise_interrupt

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
INTERRUPTED_EXIT_CODE = 130

ResultT = TypeVar("ResultT")


RankFunction = Callable[..., ResultT] | str
"""A rank function, or its import path (``"package.module:function"``), which is imported in the rank once it is
set up, so that what the module imports (mujoco reads MUJOCO_GL when imported) sees the rank's environment."""


def pack_job(rank_fn: RankFunction, args: tuple[object, ...]) -> bytes:
    """``rank_fn`` and its arguments, for :func:`run_worker`."""
    return cloudpickle.dumps((rank_fn, args))


def run_worker(plan: LaunchPlan, job: bytes) -> object:
    """Set up this rank of ``plan`` and run ``rank_fn(ctx, *args)`` from the job; on any exception log it and exit
    the process at once."""
    _die_with_parent()
    identity = RankIdentity.read()
    return exit_on_failure(identity.rank, lambda: call_in_rank(plan, lambda: cloudpickle.loads(job), identity))


def call_in_rank(
    plan: LaunchPlan, load_job: Callable[[], tuple[RankFunction, tuple]], identity: RankIdentity | None = None
) -> object:
    """``rank_fn(ctx, *args)`` from ``load_job()``, called once this rank is set up on its device (see
    :func:`~mjdist.launch.bootstrap.enter_device`), so that what the job imports sees the rank's environment."""
    from mjdist.launch.bootstrap import enter_device

    with enter_device(plan, identity) as ctx:
        rank_fn, args = load_job()
        if isinstance(rank_fn, str):
            module, _, name = rank_fn.partition(":")
            rank_fn = getattr(importlib.import_module(module), name)
        return rank_fn(ctx, *args)


def exit_on_failure(rank: int, fn: Callable[[], ResultT]) -> ResultT:
    """Run ``fn()`` as global rank ``rank``, and end the process as soon as it fails.

    SIGUSR1 becomes a stop request; any exception is logged with its traceback at CRITICAL and the process exits 1
    (130 when interrupted) without waiting for anything, so the agent (torchrunx's or torchrun's) sees a failed
    worker at once and stops the other ranks.
    """
    signal.signal(signal.SIGUSR1, raise_interrupt)  # the launcher's stop request, before training installs its own
    try:
        return fn()
    except KeyboardInterrupt:
        log.warning("rank %d interrupted", rank, extra=failure_record(rank, "interrupted", "interrupted"))
        _exit_now(INTERRUPTED_EXIT_CODE)
    except BaseException as error:  # every failure must end the job, SystemExit included
        if _lost_peer(error):
            log.error("rank %d stopped: another rank went away (%s)", rank, first_line(error),
                      extra=failure_record(rank, "lost-peer", first_line(error)))  # fmt: skip
        elif _says_it_all(error):
            summary = _one_line(error)
            log.critical("rank %d failed: %s", rank, summary, extra=failure_record(rank, "error", summary))
        else:
            summary = f"{type(error).__name__}: {first_line(error)}"
            log.critical("rank %d failed:\n%s", rank, traceback.format_exc(),
                         extra=failure_record(rank, "error", summary))  # fmt: skip
        _exit_now(1)


def failure_record(rank: int, kind: str, summary: str) -> dict:
    """``extra`` for the record that reports a rank's failure: (rank, kind, one-line summary).

    kind is 'error' (the rank raised), 'lost-peer' (a collective failed because another rank died) or
    'interrupted'. The launcher's log server collects these (see log_routing).
    """
    return {"mjdist_failure": (rank, kind, summary)}


def first_line(error: BaseException) -> str:
    """The first line of an exception's message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _lost_peer(error: BaseException) -> bool:
    """A collective that failed because another rank died: a consequence, not the cause."""
    import torch.distributed as dist

    return isinstance(error, dist.DistError) or "by peer" in str(error)


def _one_line(error: BaseException) -> str:
    """A failure that says it all, in one line; a RankFailedError (a rank's hang watchdog) names its cause itself."""
    from mjdist.errors import RankFailedError

    return first_line(error) if isinstance(error, RankFailedError) else f"{type(error).__name__}: {first_line(error)}"


def _says_it_all(error: BaseException) -> bool:
    """A failure whose one-line message is the whole story (no traceback needed): a training failure, or a rank's
    hang watchdog naming where it stopped."""
    from mjdist.errors import RankFailedError, TrainingFailure

    return isinstance(error, TrainingFailure | RankFailedError)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent (the torchrunx agent) dies, however it dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(1)


def _exit_now(code: int) -> NoReturn:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
