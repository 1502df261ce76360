"""One progress line per PPO iteration, in place of rsl_rl's multi-line console block; episode statistics kept on
the device during collection and read once per iteration."""

from __future__ import annotations

import datetime
import logging
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
from rsl_rl.utils.logger import Logger

from mjdist.rl.metrics import IterationTiming, env_steps_per_s

log = logging.getLogger(__name__)


class ProgressLogger(Logger):
    """rsl_rl's Logger (TensorBoard/wandb, episode statistics) with a compact console line.

    Throughput counts every rank: rsl_rl sizes a collection as num_steps_per_env x num_envs x world size.
    ``after_iteration(it, collect_time, learn_time)`` runs on every rank once iteration ``it`` is complete and
    logged.

    rsl_rl's logger reads finished episodes back to the host at every step (``nonzero()``, ``.cpu()``), on rank 0
    only, so rank 0 would fall behind and every other rank wait for it at the next all-reduce. Here each step
    only records ``(done, return so far, length so far)`` on the device; :meth:`log` copies the iteration's
    records to the host at once and fills rsl_rl's episode buffers exactly as rsl_rl would have, step by step.
    """

    def __init__(self, *args: Any, after_iteration: Callable[[int, float, float], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_iteration = after_iteration
        self._episode_ends: list[torch.Tensor] = []
        """One ``[3, num_envs]`` record per step of this iteration: done, episode return, episode length."""

    def process_env_step(
        self, rewards: torch.Tensor, dones: torch.Tensor, extras: dict, intrinsic_rewards: torch.Tensor | None = None
    ) -> None:
        """Episode returns and lengths on the device, without waiting for it (mjdist's agents configure no RND,
        so ``intrinsic_rewards`` is always None)."""
        if self.writer is None:
            return
        if "log" in extras:
            self.ep_extras.append(extras["log"])
        self.cur_reward_sum += rewards
        self.cur_episode_length += 1
        done = dones > 0
        self._episode_ends.append(torch.stack((done.float(), self.cur_reward_sum, self.cur_episode_length)))
        self.cur_reward_sum.masked_fill_(done, 0.0)
        self.cur_episode_length.masked_fill_(done, 0.0)

    def log(self, it: int, start_it: int, total_it: int, collect_time: float, learn_time: float, **kwargs) -> None:
        """Write metrics through rsl_rl (its console block goes wherever stdout does), then log one line."""
        if self.writer is not None:
            self._read_episode_statistics()
        super().log(it=it, start_it=start_it, total_it=total_it, collect_time=collect_time, learn_time=learn_time,
                    **kwargs)  # fmt: skip
        if self.writer is not None:
            self._progress_line(it, start_it, total_it, collect_time, learn_time)
        self.after_iteration(it, collect_time, learn_time)

    def _progress_line(self, it: int, start_it: int, total_it: int, collect_time: float, learn_time: float) -> None:
        steps_per_iteration = self.cfg["num_steps_per_env"] * self.num_envs * self.gpu_world_size
        steps_per_s = env_steps_per_s((IterationTiming(collect_time, learn_time, 0.0),), steps_per_iteration) or 0.0
        done = it + 1 - start_it
        eta = datetime.timedelta(seconds=round(self.tot_time / done * (total_it - start_it - done)))
        reward = f"{statistics.mean(self.rewbuffer):8.2f}" if self.rewbuffer else "     n/a"
        length = f"{statistics.mean(self.lenbuffer):6.1f}" if self.lenbuffer else "   n/a"
        log.info(
            "iter %*d/%d | %9s env-steps/s (%s) | reward %s | ep len %s | %.2f s/iter | ETA %s",
            len(str(total_it)), it + 1, total_it,
            f"{steps_per_s:,.0f}", self._envs_per_step(),
            reward, length, collect_time + learn_time, eta,
        )  # fmt: skip

    def _read_episode_statistics(self) -> None:
        """The iteration's finished episodes into rsl_rl's buffers (one copy to the host), and the env's per-step
        episode means (NaN on steps where none ended) into one mean per name over the steps where some did."""
        if self._episode_ends:
            for done, returns, lengths in torch.stack(self._episode_ends).cpu().numpy():
                ended = done > 0
                self.rewbuffer.extend(returns[ended].tolist())
                self.lenbuffer.extend(lengths[ended].tolist())
            self._episode_ends.clear()
        names = list(dict.fromkeys(name for step in self.ep_extras for name in step))
        if names:
            missing = torch.tensor(float("nan"), device=self.device)
            per_step = torch.stack([
                torch.stack([torch.as_tensor(step.get(name, missing), dtype=torch.float, device=self.device).reshape(())
                             for step in self.ep_extras])
                for name in names
            ])  # fmt: skip
            means = dict(zip(names, per_step.nanmean(dim=1).tolist(), strict=True))
            self.ep_extras[:] = [{name: mean for name, mean in means.items() if not math.isnan(mean)}]

    def _envs_per_step(self) -> str:
        if self.gpu_world_size == 1:
            return f"{self.num_envs} envs"
        total = self.num_envs * self.gpu_world_size
        return f"{self.gpu_world_size} ranks x {self.num_envs} envs = {total}"
