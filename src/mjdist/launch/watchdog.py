"""The launcher's hang watchdog (``train --timeout S``): end a job whose ranks stop making progress, naming them.

Ranks beat at fixed points of each iteration (:mod:`mjdist.launch.heartbeat`). The clock starts with the first
beat, once every rank has built its environment (cold kernel compiles happen before it and are not counted) and
restarts with every beat of any rank. When no rank has beaten for ``timeout_s``, the ranks that are behind (fewest
beats) are the stuck ones: a rank stuck in its own code leaves the others waiting for it in a collective, one
stage ahead. If every rank is at the same stage, all are named (a deadlock, or a stalled file system).

A process that runs ranks itself (a single-process run; a rank that torchrun started) watches its own beats with
:func:`watching_this_process`, which stops its main thread, or the process, when they stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mjdist.errors import RankFailedError
from mjdist.launch import heartbeat
from mjdist.signals import handling

log = logging.getLogger(__name__)

POLL_S = 0.5
HANG_SIGNAL = signal.SIGUSR2
"""Sent to the main thread of a process that watches itself, by its hang watchdog; raises :class:`Hung` there."""
HANG_EXIT_GRACE_S = 10.0
"""A process whose main thread does not react to the hang signal (stuck in C code, e.g. waiting in a collective)
exits after this."""


class Hung(Exception):
    """The hang watchdog of this process stopped its main thread."""


class HangWatchdog:
    """Watches beats from ``world_size`` ranks (or only the global ``ranks`` named); calls ``end_job()`` once,
    after recording :attr:`cause`.

    Beats arrive through :meth:`record` (in-process) or as ``rank<TAB>stage`` lines appended to
    ``progress_file`` (by the log server of a multi-rank job).
    """

    def __init__(
        self,
        world_size: int,
        timeout_s: float,
        end_job: Callable[[], None],
        progress_file: Path | None = None,
        ranks: Sequence[int] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.end_job = end_job
        self.progress_file = progress_file
        watched = range(world_size) if ranks is None else ranks
        self.beats = dict.fromkeys(watched, 0)
        self.stages = dict.fromkeys(watched, "none since the launch")
        self.cause: str | None = None
        self._last_beat: float | None = None
        self._read_offset = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def record(self, rank: int, stage: str) -> None:
        """A beat: ``rank`` reached ``stage``."""
        with self._lock:
            self.beats[rank] += 1
            self.stages[rank] = stage
            self._last_beat = time.monotonic()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Watch in a background thread for the duration of the block."""
        thread = threading.Thread(target=self._watch, name="mjdist-hang-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stopped.set()
            thread.join()

    def wait_stopped(self, timeout_s: float) -> bool:
        """Whether the watched block ended within ``timeout_s``."""
        return self._stopped.wait(timeout_s)

    def stuck_ranks(self) -> str:
        """The one-line cause: which ranks stopped, where, and for how long."""
        behind = min(self.beats.values())
        stuck = [rank for rank, count in self.beats.items() if count == behind]
        waiting = [str(rank) for rank in self.beats if rank not in stuck]
        names = f"rank {stuck[0]}" if len(stuck) == 1 else f"ranks {', '.join(map(str, stuck))}"
        last = "; ".join(f"rank {rank}: {self.stages[rank]}" for rank in stuck)
        cause = f"{names} made no progress for {self.timeout_s:g} s (--timeout); last progress of {last}"
        if waiting:
            return f"{cause}; rank(s) {', '.join(waiting)} waited for it"
        if len(stuck) > 1:
            return f"{cause} (a deadlock, or a stalled file system?)"
        return cause

    def _watch(self) -> None:
        while not self._stopped.wait(POLL_S):
            self._read_progress_file()
            with self._lock:
                hung = self._last_beat is not None and time.monotonic() - self._last_beat > self.timeout_s
            if hung:
                self.cause = self.stuck_ranks()
                log.error("Hang: %s; ending the job", self.cause)
                self.end_job()
                return

    def _read_progress_file(self) -> None:
        if self.progress_file is None or not self.progress_file.exists():
            return
        with open(self.progress_file, "rb") as progress:
            progress.seek(self._read_offset)
            data = progress.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._read_offset += len(complete)
        for line in complete.decode().splitlines():
            rank, stage = line.split("\t", 1)
            self.record(int(rank), stage)


@contextlib.contextmanager
def watching_this_process(timeout_s: float, rank: int = 0) -> Iterator[None]:
    """Watch the beats of this process, global rank ``rank``, for the block (``timeout_s`` 0: not at all).

    When none came for ``timeout_s``, the main thread gets a RankFailedError naming the stage the rank stopped
    at; if it does not react within HANG_EXIT_GRACE_S (stuck in C code), the process logs the cause and exits 1.
    """
    watchdog = HangWatchdog(1, timeout_s, lambda: _hang_main_thread(watchdog), ranks=(rank,))
    heartbeat.set_in_process_sink(watchdog.record)
    try:
        with handling((HANG_SIGNAL,), _raise_hung), watchdog.watching() if timeout_s > 0 else contextlib.nullcontext():
            yield
    except Hung as hung:
        raise RankFailedError(watchdog.cause or "hung", rank) from hung
    finally:
        heartbeat.set_in_process_sink(None)


def _raise_hung(signum: int, frame: object) -> None:
    raise Hung


def _hang_main_thread(watchdog: HangWatchdog) -> None:
    """Interrupt the main thread with :class:`Hung`; exit the process if it cannot be interrupted."""
    signal.pthread_kill(threading.main_thread().ident or 0, HANG_SIGNAL)
    if not watchdog.wait_stopped(HANG_EXIT_GRACE_S):
        log.error("Training failed: %s; the process did not respond, exiting", watchdog.cause)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)
