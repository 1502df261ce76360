"""Progress marks ("heartbeats") from each rank to the launcher's hang watchdog (:mod:`mjdist.launch.watchdog`).

A rank beats when it starts training (after every rank has built its environment and the parameters were
broadcast), when it has collected an iteration's experience, and when it has finished the iteration. In a job
of several ranks a beat is a DEBUG log record that torchrunx forwards to the launcher's log server (so it also
arrives from other hosts); in a single process it goes straight to the watchdog. Kept free of heavy imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

PROGRESS_ATTRIBUTE = "mjdist_progress"
"""Log-record attribute carrying ``(rank, stage)``."""

_in_process_sink: Callable[[int, str], None] | None = None


def beat(rank: int, stage: str) -> None:
    """Report that ``rank`` reached ``stage`` (a phrase such as 'finished iteration 3')."""
    if _in_process_sink is not None:
        _in_process_sink(rank, stage)
        return
    log.debug("rank %d %s", rank, stage, extra={PROGRESS_ATTRIBUTE: (rank, stage)})


def set_in_process_sink(sink: Callable[[int, str], None] | None) -> None:
    """Deliver beats of this process to ``sink`` (the single-process watchdog), or stop doing so (None)."""
    global _in_process_sink
    _in_process_sink = sink
