"""rsl_rl's PPO, extended through rsl_rl's own seam (``algorithm.class_name = "mjdist.rl.ppo:DistributedPPO"``):
its gradient all-reduce timed, and its start-of-training broadcast and its update reported to the runner."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from rsl_rl.algorithms import PPO


class DistributedPPO(PPO):
    """PPO that times ``reduce_parameters`` (called after every mini-batch) and calls its runner's stage hooks.

    ``after_broadcast`` runs once rsl_rl's start-of-training broadcast returns (every rank has built its
    environment); ``update_guard`` wraps each PPO update (the runner's non-finite check). Both default to doing
    nothing, so the class also works outside mjdist's runner.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.after_broadcast: Callable[[], None] = _nothing
        """Called after the start-of-training broadcast."""
        self.update_guard: Callable[[Callable[[], dict[str, float]]], dict[str, float]] = _call
        """Called with rsl_rl's update; returns its mean losses."""
        self.sync_s = 0.0
        """Host seconds spent in the gradient all-reduce since :meth:`take_sync_seconds` (CPU ranks)."""
        self._sync_events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def reduce_parameters(self) -> None:
        """rsl_rl's gradient all-reduce, timed: on a GPU with CUDA events (NCCL returns before the all-reduce has run,
        so host time would be about 0), read once per iteration."""
        if str(self.device).startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            super().reduce_parameters()
            end.record()
            self._sync_events.append((start, end))
            return
        start_s = time.perf_counter()
        super().reduce_parameters()
        self.sync_s += time.perf_counter() - start_s

    def broadcast_parameters(self) -> None:
        super().broadcast_parameters()
        self.after_broadcast()

    def update(self) -> dict[str, float]:
        return self.update_guard(super().update)

    def take_sync_seconds(self) -> float:
        """Seconds of gradient all-reduce since the last call (waits for this iteration's CUDA events)."""
        if self._sync_events:
            self._sync_events[-1][1].synchronize()
            self.sync_s += sum(start.elapsed_time(end) for start, end in self._sync_events) / 1000
            self._sync_events.clear()
        seconds, self.sync_s = self.sync_s, 0.0
        return seconds


def _nothing() -> None:
    return None


def _call(update: Callable[[], dict[str, float]]) -> dict[str, float]:
    return update()
