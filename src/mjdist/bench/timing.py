"""Repeated timing of a unit of work, sized so that each repetition lasts about a chosen duration."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

CALIBRATION_SHARE = 0.25
"""Calibration doubles the number of units until one run lasts this share of the target duration."""


@dataclass(frozen=True)
class Timings:
    """``units`` units of work per repetition, and the seconds each repetition took."""

    units: int
    seconds: tuple[float, ...]

    def rates(self, items_per_unit: float) -> list[float]:
        """Items per second of each repetition (e.g. worlds x steps per second)."""
        return [self.units * items_per_unit / seconds for seconds in self.seconds]


def time_repetitions(run: Callable[[int], None], duration: float, repetitions: int) -> Timings:
    """Time ``run(n)`` (do n units of work and return when they are done, device work included).

    Calibration runs first, doubling n from 1 until a run takes ``CALIBRATION_SHARE x duration``; this also
    warms up caches and allocations. n is then scaled so that one run lasts about ``duration`` seconds, and
    ``repetitions`` runs of exactly n units are timed.
    """
    units = 1
    while True:
        elapsed = _seconds(run, units)
        if elapsed >= CALIBRATION_SHARE * duration:
            break
        units *= 2
    units = max(1, math.ceil(units * duration / elapsed))
    return Timings(units, tuple(_seconds(run, units) for _ in range(repetitions)))


def _seconds(run: Callable[[int], None], units: int) -> float:
    start = time.perf_counter()
    run(units)
    return time.perf_counter() - start
