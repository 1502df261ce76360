"""The hang watchdog names stuck ranks, waits for the first beat, stays quiet while beats arrive, and stops a
single-process run that hangs.

The watchdog's clock is the test's (``time.monotonic`` in its module): the test moves it, and waits for the
watchdog's polls and its verdict as events, so that a loaded machine only makes the tests slower, never wrong.
"""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path

import pytest

from mjdist.errors import RankFailedError
from mjdist.launch import heartbeat
from mjdist.launch import watchdog as watchdog_module
from mjdist.launch.launcher import run_ranks
from mjdist.launch.plan import LaunchPlan, RankPlan
from mjdist.launch.watchdog import HangWatchdog

DEADLINE_S = 20.0
"""How long a test waits for an event that should come within a second or two."""


class Clock:
    """The watchdog module's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog looks every 20 ms instead of every 0.5 s, so that waiting for its polls is quick."""
    monkeypatch.setattr(watchdog_module, "POLL_S", 0.02)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, fast_polls: None) -> Clock:
    fake = Clock()
    monkeypatch.setattr(watchdog_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


class Observed:
    """A watchdog whose polls and verdict are events the test can wait for."""

    def __init__(self, watchdog: HangWatchdog) -> None:
        self.watchdog = watchdog
        self.ended = threading.Event()
        watchdog.end_job = self.ended.set
        self._polls = 0
        self._polled = threading.Condition()
        read_progress_file = watchdog._read_progress_file

        def polling() -> None:  # the first thing each poll does
            read_progress_file()
            with self._polled:
                self._polls += 1
                self._polled.notify_all()

        watchdog._read_progress_file = polling  # type: ignore[method-assign]

    def wait_for_polls(self, count: int) -> None:
        """Until ``count`` more polls began: every poll before the last one has finished its check."""
        with self._polled:
            target = self._polls + count
            assert self._polled.wait_for(lambda: self._polls >= target, timeout=DEADLINE_S), "the watchdog polls"


def test_the_watchdog_names_the_rank_that_fell_behind(tmp_path: Path, clock: Clock) -> None:
    progress = tmp_path / "progress.log"
    progress.write_text("0\tstarted training\n1\tstarted training\n2\tstarted training\n0\tcollected iteration 1\n"
                        "2\tcollected iteration 1\n1\tcollected")  # fmt: skip  # the last line is still being written
    observed = Observed(HangWatchdog(3, 0.3, lambda: None, progress))
    with observed.watchdog.watching():
        observed.wait_for_polls(2)  # the beats in the file were read
        assert not observed.ended.is_set()
        clock.now += 0.31
        assert observed.ended.wait(DEADLINE_S)
    assert observed.watchdog.cause == (
        "rank 1 made no progress for 0.3 s (--timeout); last progress of rank 1: started training; "
        "rank(s) 0, 2 waited for it"
    )


def test_the_watchdog_waits_for_the_first_beat_then_names_every_rank_when_none_moves(clock: Clock) -> None:
    observed = Observed(HangWatchdog(2, 0.3, lambda: None))
    with observed.watchdog.watching():
        clock.now += 3600.0  # an hour of cold compiles before the first beat is not counted
        observed.wait_for_polls(2)
        assert not observed.ended.is_set()
        for rank in (0, 1):
            observed.watchdog.record(rank, "finished iteration 4")
        clock.now += 0.2
        observed.wait_for_polls(2)
        assert not observed.ended.is_set()  # 0.2 s is within the timeout
        clock.now += 0.11
        assert observed.ended.wait(DEADLINE_S)
    assert observed.watchdog.cause == (
        "ranks 0, 1 made no progress for 0.3 s (--timeout); last progress of rank 0: finished iteration 4; "
        "rank 1: finished iteration 4 (a deadlock, or a stalled file system?)"
    )


def test_beats_keep_the_watchdog_quiet(clock: Clock) -> None:
    observed = Observed(HangWatchdog(1, 0.3, lambda: None))
    with observed.watchdog.watching():
        for iteration in range(5):  # 1 s in all, never 0.3 s without a beat
            observed.watchdog.record(0, f"finished iteration {iteration}")
            clock.now += 0.2
            observed.wait_for_polls(2)
        assert not observed.ended.is_set()
    assert observed.watchdog.cause is None


def stuck_after_one_beat(ctx: object) -> str:
    """A rank function that starts training, then makes no progress (for longer than the test waits)."""
    heartbeat.beat(0, "started training")
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "never stopped"


def test_the_single_process_watchdog_stops_a_hung_run(fast_polls: None) -> None:
    plan = LaunchPlan(
        name="stuck", launcher="in-process", world_size=1, backend=None, torchrunx_log_dir=None, torch_threads=None,
        ranks=(RankPlan(rank=0, host="localhost", local_rank=0, device="cpu", physical_gpu=None, seed=0),),
    )  # fmt: skip
    with pytest.raises(RankFailedError) as raised:
        run_ranks(plan, stuck_after_one_beat, timeout_s=0.2)
    assert raised.value.rank == 0
    assert str(raised.value) == (
        "rank 0 made no progress for 0.2 s (--timeout); last progress of rank 0: started training"
    )  # fmt: skip
