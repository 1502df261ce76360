"""Signal handlers scoped to a block, shared by the launcher (its Ctrl-C) and the runner (stop requests)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def handling(signals: tuple[signal.Signals, ...], handler: Callable[[int, object], None]) -> Iterator[None]:
    """Route ``signals`` to ``handler`` for the duration of the block, then restore the previous handlers."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler that turns the signal into KeyboardInterrupt, so the usual clean-up runs."""
    raise KeyboardInterrupt
