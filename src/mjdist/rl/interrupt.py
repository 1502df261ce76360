"""Stop training at an iteration boundary when asked, so the last completed iteration can be saved.

The first SIGINT, any SIGTERM (also what torchrunx's agent sends when it winds the workers down) and SIGUSR1
(how the launcher forwards its own Ctrl-C to the ranks) request a stop; the runner honours it when the current
iteration ends. A second SIGINT (Ctrl-C pressed twice) stops at once, without saving.
"""

from __future__ import annotations

import contextlib
import signal

from mjdist.signals import handling

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(Exception):
    """Raised at the end of ``iteration`` because a stop was requested."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped after iteration {iteration}")
        self.iteration = iteration


class StopRequest:
    """Whether a stop was requested while :meth:`installed` is active."""

    def __init__(self) -> None:
        self.requested = False

    def installed(self) -> contextlib.AbstractContextManager[None]:
        """Route the stop signals here for the duration of the block."""
        return handling(STOP_SIGNALS, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
