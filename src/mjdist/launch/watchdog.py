"""The launcher's hang watchdog (``train --timeout S``): end a job whose ranks stop making progress, naming them.

Ranks beat at fixed points of each iteration (:mod:`mjdist.launch.heartbeat`). The clock starts with the first
beat, once every rank has built its environment (cold kernel compiles happen before it and are not counted) and
restarts with every beat of any rank. When no rank has beaten for ``timeout_s``, the ranks that are behind (fewest
beats) are the stuck ones: a rank stuck in its own code leaves the others waiting for it in a collective, one
stage ahead. If every rank is at the same stage, all are named (a deadlock, or a stalled file system).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 0.5


class HangWatchdog:
    """Watches beats from ``world_size`` ranks; calls ``end_job()`` once, after recording :attr:`cause`.

    Beats arrive through :meth:`record` (in-process) or as ``rank<TAB>stage`` lines appended to
    ``progress_file`` (by the log server of a multi-rank job).
    """

    def __init__(
        self, world_size: int, timeout_s: float, end_job: Callable[[], None], progress_file: Path | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.end_job = end_job
        self.progress_file = progress_file
        self.beats = [0] * world_size
        self.stages = ["none since the launch"] * world_size
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
        behind = min(self.beats)
        stuck = [rank for rank, count in enumerate(self.beats) if count == behind]
        waiting = [str(rank) for rank in range(len(self.beats)) if rank not in stuck]
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
