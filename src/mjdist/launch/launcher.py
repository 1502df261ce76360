"""Run a function on every rank of a plan: in this process for one rank, through torchrunx for several; end
every process on failure. ``train`` and ``mjdist.launch`` both start their ranks here."""

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
from typing import TypeVar

import psutil
import torchrunx

from mjdist.errors import RankFailedError
from mjdist.launch.log_receiver import plain_data_log_server
from mjdist.launch.log_routing import log_handlers
from mjdist.launch.loopback import gloo_on_loopback
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.watchdog import HangWatchdog, watching_this_process
from mjdist.launch.worker import RankFunction, call_in_rank, first_line, pack_job, run_worker
from mjdist.signals import handling, raise_interrupt

log = logging.getLogger(__name__)

ENV_VARS_FOR_RANKS = (
    *torchrunx.DEFAULT_ENV_VARS_FOR_COPY,
    "LD_LIBRARY_PATH",
    "GLOO_*",
    "MUJOCO*",
    "WARP*",
    "WANDB*",
    "OMP_NUM_THREADS",
    "HOME",
)
"""Variables the ranks need (shell patterns), copied explicitly so they also reach ranks on other hosts, whose
agents start over SSH with a bare environment. LD_LIBRARY_PATH is named outright: torchrunx releases differ in
whether their pattern for it ('LD_LIBRARY' or 'LD_LIBRARY*') matches it. GLOO_* and NCCL* carry the choice of
network interface (GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME) and NCCL's settings to every rank."""
CLEANUP_GRACE_S = 3.0
STOPPED_ON_REQUEST = "every rank stopped on request"
PR_SET_CHILD_SUBREAPER = 36

T = TypeVar("T")


def run_ranks(
    plan: LaunchPlan,
    rank_fn: RankFunction[T],
    *args: object,
    stopped: str = STOPPED_ON_REQUEST,
    timeout_s: float = 0.0,
) -> list[T]:
    """Call ``rank_fn(ctx, *args)`` on every rank of the plan and return the values in rank order.

    Each rank is set up first (:func:`~mjdist.launch.bootstrap.enter_device`: device, seeds, threads, Warp's
    device scope, the plan's environment variables); ``ctx`` is its :class:`~mjdist.launch.context.RankContext`.
    ``rank_fn`` may be an import path (``"package.module:function"``), imported in the rank after that set-up.
    A failure raises RankFailedError naming the first rank that failed. The ranks start on the plan's hosts (over
    SSH with its ssh config, through torchrunx) unless the plan is a single rank here, which runs in this process.

    Ctrl-C or SIGTERM asks the ranks to stop (SIGUSR1, a KeyboardInterrupt there),
    and raises KeyboardInterrupt(``stopped``) once they have; a second one stops them at once. No process of
    the job survives either. With ``timeout_s`` > 0 a hang watchdog ends the job (a RankFailedError naming the
    stuck ranks) once no rank has beaten (:mod:`mjdist.launch.heartbeat`) for that long.
    """
    if plan.launcher == "environment":
        raise ValueError("a plan of one rank that torchrun started runs in that rank, not through run_ranks")
    if plan.launcher == "in-process":
        return [_run_in_process(plan, rank_fn, args, timeout_s)]
    return _launch_ranks(plan, pack_job(rank_fn, args), stopped, timeout_s)


def _run_in_process(plan: LaunchPlan, rank_fn: RankFunction[T], args: tuple[object, ...], timeout_s: float) -> T:
    with _signals_as_interrupt(), watching_this_process(timeout_s):
        return call_in_rank(plan, lambda: (rank_fn, args))  # type: ignore[return-value]


def _watching(watchdog: HangWatchdog, timeout_s: float) -> contextlib.AbstractContextManager[None]:
    return watchdog.watching() if timeout_s > 0 else contextlib.nullcontext()


def _launch_ranks(plan: LaunchPlan, job: bytes, stopped: str, timeout_s: float) -> list[T]:
    with (
        tempfile.NamedTemporaryFile(prefix="mjdist-failures-", suffix=".log") as failure_file,
        tempfile.NamedTemporaryFile(prefix="mjdist-progress-", suffix=".log") as progress_file,
        plain_data_log_server(plan.torchrunx_log_dir) as launch_over,
        gloo_on_loopback(plan.hosts),
    ):
        hosts = list(plan.hosts)
        launcher = torchrunx.Launcher(
            hostnames=hosts,
            workers_per_host=plan.ranks_per_host,
            ssh_config_file=plan.ssh_config,
            backend=plan.backend,  # type: ignore[arg-type]
            copy_env_vars=ENV_VARS_FOR_RANKS,
            extra_env_vars=plan.rank_variables or None,
        )
        launcher.set_logging_handlers(
            partial(
                log_handlers,
                hosts,
                [plan.ranks_per_host] * len(hosts),
                plan.torchrunx_log_dir,
                failure_file.name,
                progress_file.name,
            )
        )
        log.info("Launching %d ranks (%s) on %s through torchrunx", plan.world_size, plan.backend, ", ".join(hosts))
        stop = _RankStopper()
        watchdog = HangWatchdog(plan.world_size, timeout_s, _kill_workers, Path(progress_file.name))
        try:
            with stop.on_signals(), _no_orphans(), _watching(watchdog, timeout_s):
                try:
                    result = launcher.run(run_worker, plan, job)
                finally:
                    launch_over()  # torchrunx ended its log server on the way out
        except KeyboardInterrupt as interrupt:
            raise KeyboardInterrupt("every rank was stopped at once") from interrupt
        except Exception as error:
            if stop.requested:
                raise KeyboardInterrupt(stopped) from error
            if watchdog.cause is not None:
                raise RankFailedError(watchdog.cause) from error
            rank, message = failure_summary(Path(failure_file.name).read_text().splitlines(), plan.world_size, error)
            raise RankFailedError(message, rank) from error
    return [result.rank(rank) for rank in range(plan.world_size)]


def _worker_processes() -> list[psutil.Process]:
    """This launcher's rank processes (torchrunx starts them with multiprocessing's spawn)."""
    workers = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in process.cmdline()):
                workers.append(process)
    return workers


def _kill_workers() -> None:
    """End every rank at once (the hang watchdog's verdict); the agents then report the job as failed."""
    for process in _worker_processes():
        with contextlib.suppress(psutil.Error):
            process.kill()


def failure_summary(reported: list[str], world_size: int, error: Exception) -> tuple[int | None, str]:
    """Name the cause: the first rank that raised; else the ranks that died without a word (signals).

    ``reported`` holds the failure file's ``rank<TAB>kind<TAB>summary`` lines in arrival order. Returns the rank
    to blame (None when it is not a single one) and the message, one line.
    """
    failures = [line.split("\t", 2) for line in reported]
    for rank, kind, summary in failures:
        if kind == "error":
            return int(rank), f"rank {rank}: {summary}"
    spoke = {int(rank) for rank, _, _ in failures}
    silent = [rank for rank in range(world_size) if rank not in spoke]
    if failures and silent:
        return (
            silent[0] if len(silent) == 1 else None,
            f"rank {', '.join(map(str, silent))} died without a Python error (killed by a signal: SIGKILL, a "
            "segfault, or the out-of-memory killer); the other ranks lost contact with it",
        )
    return None, f"{type(error).__name__}: {first_line(error) or 'a worker process died'}"


def _signals_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so the same clean-up runs (also where SIGINT was ignored)."""
    return handling((signal.SIGINT, signal.SIGTERM), raise_interrupt)


class _RankStopper:
    """The launcher's Ctrl-C/SIGTERM: first ask every rank to stop after its current iteration (SIGUSR1; rank 0
    saves that iteration), and stop everything at once on a second signal."""

    def __init__(self) -> None:
        self.requested = False

    def on_signals(self) -> contextlib.AbstractContextManager[None]:
        return handling((signal.SIGINT, signal.SIGTERM), self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning(
            "Asking every rank to stop (training ranks finish their iteration, which rank 0 saves); interrupt again "
            "to stop at once"
        )
        for process in _worker_processes():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGUSR1)


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
