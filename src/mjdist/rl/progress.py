"""One progress line per PPO iteration, in place of rsl_rl's multi-line console block."""

from __future__ import annotations

import datetime
import logging
import statistics
from collections.abc import Callable
from typing import Any

from rsl_rl.utils.logger import Logger

log = logging.getLogger(__name__)


class ProgressLogger(Logger):
    """rsl_rl's Logger (TensorBoard/wandb, episode statistics) with a compact console line.

    Throughput counts every rank: rsl_rl sizes a collection as num_steps_per_env x num_envs x world size.
    ``after_iteration(it, collect_time, learn_time)`` runs on every rank once iteration ``it`` is complete and
    logged.
    """

    def __init__(self, *args: Any, after_iteration: Callable[[int, float, float], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_iteration = after_iteration

    def log(self, it: int, start_it: int, total_it: int, collect_time: float, learn_time: float, **kwargs) -> None:
        """Write metrics through rsl_rl (its console block goes wherever stdout does), then log one line."""
        super().log(it=it, start_it=start_it, total_it=total_it, collect_time=collect_time, learn_time=learn_time,
                    **kwargs)  # fmt: skip
        if self.writer is not None:
            self._progress_line(it, start_it, total_it, collect_time, learn_time)
        self.after_iteration(it, collect_time, learn_time)

    def _progress_line(self, it: int, start_it: int, total_it: int, collect_time: float, learn_time: float) -> None:
        steps_per_iteration = self.cfg["num_steps_per_env"] * self.num_envs * self.gpu_world_size
        done = it + 1 - start_it
        eta = datetime.timedelta(seconds=round(self.tot_time / done * (total_it - start_it - done)))
        reward = f"{statistics.mean(self.rewbuffer):8.2f}" if self.rewbuffer else "     n/a"
        length = f"{statistics.mean(self.lenbuffer):6.1f}" if self.lenbuffer else "   n/a"
        log.info(
            "iter %*d/%d | %9s env-steps/s (%s) | reward %s | ep len %s | %.2f s/iter | ETA %s",
            len(str(total_it)), it + 1, total_it,
            f"{steps_per_iteration / (collect_time + learn_time):,.0f}", self._envs_per_step(),
            reward, length, collect_time + learn_time, eta,
        )  # fmt: skip

    def _envs_per_step(self) -> str:
        if self.gpu_world_size == 1:
            return f"{self.num_envs} envs"
        total = self.num_envs * self.gpu_world_size
        return f"{self.gpu_world_size} ranks x {self.num_envs} envs = {total}"
