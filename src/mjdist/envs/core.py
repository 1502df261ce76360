"""Batched MuJoCo-Warp environment core: ``nworld = num_envs`` worlds on one device, torch views of the state.

A task subclasses :class:`MjWarpEnv` and supplies the model, observations, reward terms, terminations and
initial states; the core does actions, (graph-captured) physics, episode bookkeeping, resets and logging.
All task computations are torch operations on zero-copy views of the Warp arrays (``self.qpos`` ...).
A step never waits for the device: resets are masks (``torch.where``), not lists of indices, so no step asks
how many worlds are done, and episode statistics stay on the device until the logger reads them.
After a reset, quantities that MuJoCo derives from the state (``xpos``, contacts, sensors) are stale until
the next physics step, so observations should read ``qpos``/``qvel`` (or the task's own buffers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import operator
from abc import ABC, abstractmethod
from pathlib import Path

import mujoco
import mujoco_warp as mjw
import torch
import warp as wp

from mjdist.envs.config import EnvConfig

log = logging.getLogger(__name__)


class MjWarpEnv(ABC):
    """``cfg.num_envs`` MuJoCo-Warp worlds stepped together on ``device``.

    Subclasses set ``model_file`` and implement the abstract methods. Their config must have a ``rewards``
    dataclass field whose fields are the weights of the terms returned by :meth:`reward_terms`.
    """

    model_file: Path
    """MJCF file of the task's model."""
    per_world_model_fields: tuple[str, ...] = ()
    """MuJoCo-Warp ``Model`` fields that get one copy per world (e.g. ``geom_friction`` for domain
    randomization); the task writes them through ``wp.to_torch(self.wp_model.<field>)``."""
    rewards_per_second: bool = False
    """The weights in ``cfg.rewards`` are per second of simulated time: each step adds weight x term x step_dt."""

    def __init__(self, cfg: EnvConfig, device: str, seed: int) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_envs = cfg.num_envs
        self.max_episode_length = cfg.episode_length
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

        self.mj_model = mujoco.MjModel.from_xml_path(str(self.model_file))
        self.num_actions = self.mj_model.nu
        self.step_dt = self.mj_model.opt.timestep * cfg.decimation
        scale = self.step_dt if self.rewards_per_second else 1.0
        weights = dataclasses.asdict(cfg.rewards)  # type: ignore[attr-defined]
        self.reward_weights: dict[str, float] = {name: w * scale for name, w in weights.items() if w != 0}
        """Weight of each reward term that counts (weights of 0 switch terms off), per step."""
        self._wp_device = wp.get_device(str(self.device))
        self._stream = wp.stream_from_torch(self.device) if self._wp_device.is_cuda else None
        with self._warp_scope():
            self.wp_model = mjw.put_model(
                self.mj_model, batch_sizes=dict.fromkeys(self.per_world_model_fields, cfg.num_envs)
            )
            self.prepare_model()
            self.wp_data = mjw.put_data(
                self.mj_model,
                mujoco.MjData(self.mj_model),
                nworld=cfg.num_envs,
                nconmax=cfg.nconmax,
                njmax=cfg.njmax,
            )
            mjw.step(self.wp_model, self.wp_data)  # compiles (or loads) every kernel before any capture
        self._graph = self._capture_physics() if cfg.graph_capture else None

        data = self.wp_data
        self.qpos = wp.to_torch(data.qpos)
        self.qvel = wp.to_torch(data.qvel)
        self.ctrl = wp.to_torch(data.ctrl)
        self._state_to_clear = [wp.to_torch(data.qacc_warmstart), wp.to_torch(data.time)]
        if self.mj_model.na > 0:
            self._state_to_clear.append(wp.to_torch(data.act))
        self.bind_views()

        n = self.num_envs
        self.all_worlds = torch.ones(n, dtype=torch.bool, device=self.device)
        self.episode_length_buf = torch.zeros(n, dtype=torch.long, device=self.device)
        self.actions = torch.zeros(n, self.num_actions, device=self.device)
        self.prev_actions = torch.zeros_like(self.actions)
        self.terminated = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._diverged_count = torch.zeros((), dtype=torch.long, device=self.device)
        self._weights = torch.tensor(list(self.reward_weights.values()), device=self.device)
        self.episode_sums = torch.zeros(n, len(self.reward_weights), device=self.device)
        """Weighted reward of the current episodes so far, one column per term of ``reward_weights``."""
        self.obs = self.reset()

    # ---- what a task implements -------------------------------------------------------------------------

    @abstractmethod
    def observations(self) -> dict[str, torch.Tensor]:
        """Observation groups, at least ``policy`` and ``critic``, each ``[num_envs, dim]``."""

    @abstractmethod
    def reward_terms(self) -> dict[str, torch.Tensor]:
        """Unweighted reward terms ``[num_envs]``, at least those named in ``self.reward_weights`` (the fields of
        ``cfg.rewards`` whose weight is not 0); the core reads only those.

        Called after :meth:`terminations`; ``self.terminated`` holds this step's failures."""

    @abstractmethod
    def terminations(self) -> dict[str, torch.Tensor]:
        """Boolean ``[num_envs]`` per termination reason (time-outs are the core's business)."""

    @abstractmethod
    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(qpos [num_envs, nq], qvel [num_envs, nv])``: a fresh start of an episode for every world, of which the
        core keeps the rows of the worlds that start one (drawing for all keeps the step free of host syncs)."""

    def apply_actions(self, actions: torch.Tensor) -> None:
        """Write clipped policy actions to the actuators; the default drives ``ctrl`` directly."""
        self.ctrl.copy_(actions * self.cfg.action_scale)

    def prepare_model(self) -> None:  # noqa: B027 - optional hook
        """Adjust ``self.wp_model`` options that MJCF cannot express (e.g. ``opt.warn_overflow``) before the first
        step compiles the kernels."""

    def bind_views(self) -> None:  # noqa: B027 - optional hook
        """Read what the task needs from ``self.mj_model`` and take its own torch views of ``self.wp_data``/
        ``self.wp_model`` (once, before the first reset)."""

    def after_physics_step(self) -> None:  # noqa: B027 - optional hook
        """Update task state (commands, contact timers, ...) after physics, before rewards and resets."""

    def reset_task_state(self, starting: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Reset the task's own per-env buffers where the boolean mask ``starting [num_envs]`` is set (with
        ``torch.where``/``masked_fill_``: indexing by a mask or ``nonzero()`` would wait for the device)."""

    def policy_observation_terms(self) -> dict[str, int]:
        """The terms of the ``policy`` observation group, in order, with their widths (recorded in exported
        policies); the default names the whole group as one term."""
        return {"policy": self.obs["policy"].shape[-1]}

    def deployment_metadata(self) -> dict[str, object]:
        """What code running an exported policy needs besides its observations and actions (e.g. the pose that
        actions are offsets from), as JSON-ready values; none by default."""
        return {}

    # ---- the core ---------------------------------------------------------------------------------------

    def step(
        self, actions: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Advance one control step: ``(obs, reward, terminated, time_outs, extras)``; done worlds are reset.

        Every per-step computation is a handful of batched torch operations: on small batches their count, not
        their size, is what an env step costs beyond physics."""
        self.prev_actions, self.actions = self.actions, self.prev_actions  # the last actions become the previous
        torch.clamp(actions.to(self.device), -self.cfg.action_clip, self.cfg.action_clip, out=self.actions)
        self.apply_actions(self.actions)
        self.simulate()
        self.episode_length_buf += 1
        self.after_physics_step()

        reasons = {**self.terminations(), "diverged": self._diverged()}
        terminated = functools.reduce(operator.or_, reasons.values())
        self.terminated = terminated
        time_outs = (self.episode_length_buf >= self.max_episode_length) & ~terminated  # a failure is never cut short
        reward = self._reward()

        done = terminated | time_outs
        extras: dict = {"time_outs": time_outs, "log": self._episode_log(done, reasons, time_outs)}
        self._start_episodes(done)
        self.obs = self.observations()
        return self.obs, reward, terminated, time_outs, extras

    def reset(self) -> dict[str, torch.Tensor]:
        """Start new episodes in every world; returns the new observations."""
        self._start_episodes(self.all_worlds)
        self.obs = self.observations()
        return self.obs

    def _start_episodes(self, starting: torch.Tensor) -> None:
        """New episodes where the boolean mask ``starting`` is set; the other worlds keep every value."""
        qpos, qvel = self.initial_state()
        rows = starting.unsqueeze(-1)
        torch.where(rows, qpos, self.qpos, out=self.qpos)
        torch.where(rows, qvel, self.qvel, out=self.qvel)
        self.ctrl.masked_fill_(rows, 0.0)
        for state in self._state_to_clear:
            state.masked_fill_(rows if state.dim() > 1 else starting, 0.0)
        self.episode_length_buf.masked_fill_(starting, 0)
        self.actions.masked_fill_(rows, 0.0)
        self.prev_actions.masked_fill_(rows, 0.0)
        self.episode_sums.masked_fill_(rows, 0.0)
        self.reset_task_state(starting)

    def simulate(self) -> None:
        """Run ``decimation`` physics steps in every world (graph replay when captured)."""
        with self._warp_scope():  # the env's CUDA context (whatever device is current) and torch's stream
            if self._graph is not None:
                wp.capture_launch(self._graph, stream=self._stream)
                return
            for _ in range(self.cfg.decimation):
                mjw.step(self.wp_model, self.wp_data)

    def uniform(self, low: float | torch.Tensor, high: float | torch.Tensor, *shape: int) -> torch.Tensor:
        """Uniform samples in ``[low, high)`` from the env's own generator (seeded per rank); tensor bounds
        broadcast over ``shape`` (e.g. one bound per column)."""
        return low + (high - low) * torch.rand(*shape, generator=self.generator, device=self.device)

    # ---- internals --------------------------------------------------------------------------------------

    def _warp_scope(self) -> contextlib.ExitStack:
        """Device scope for Warp, plus torch's current CUDA stream so Warp and torch work stay ordered."""
        stack = contextlib.ExitStack()
        stack.enter_context(wp.ScopedDevice(self._wp_device))
        if self._stream is not None:
            stack.enter_context(wp.ScopedStream(self._stream))
        return stack

    def _capture_physics(self) -> wp.Graph | None:
        """The physics step as a Warp graph; None (with a warning) on a GPU without Warp's memory pool, where a
        capture would fail at its first allocation (some vGPU and MIG set-ups)."""
        if self._wp_device.is_cuda and not wp.is_mempool_enabled(self._wp_device):
            log.warning("%s has no CUDA memory pool for Warp: stepping physics without graph capture (slower)",
                        self._wp_device)  # fmt: skip
            return None
        if self._wp_device.is_cuda:
            torch.cuda.synchronize(self.device)
        with wp.ScopedDevice(self._wp_device), wp.ScopedCapture() as capture:
            for _ in range(self.cfg.decimation):
                mjw.step(self.wp_model, self.wp_data)
        return capture.graph

    def take_diverged_count(self) -> torch.Tensor:
        """Worlds reset for diverged physics since the last call (a 0-d tensor; reading it is the caller's sync)."""
        count, self._diverged_count = self._diverged_count, torch.zeros_like(self._diverged_count)
        return count

    def _diverged(self) -> torch.Tensor:
        """Worlds whose state is NaN/Inf or whose velocities left ``max_abs_qvel``; counted, without a sync."""
        sane = (self.qvel.abs() <= self.cfg.max_abs_qvel).all(dim=-1) & torch.isfinite(self.qpos).all(dim=-1)
        diverged = ~sane
        self._diverged_count += diverged.sum()
        return diverged

    def _reward(self) -> torch.Tensor:
        if not self.reward_weights:
            return torch.zeros(self.num_envs, device=self.device)
        terms = self.reward_terms()
        weighted = torch.stack([terms[name] for name in self.reward_weights], dim=-1) * self._weights
        weighted = torch.nan_to_num(weighted, nan=0.0, posinf=0.0, neginf=0.0)  # worlds that diverged
        self.episode_sums += weighted
        return weighted.sum(dim=-1)

    def _episode_log(
        self, done: torch.Tensor, reasons: dict[str, torch.Tensor], time_outs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-episode means of the episodes that ended this step, under names rsl_rl logs as they are; NaN when
        none ended (the step cannot know without waiting for the device), which the logger's mean skips."""
        flags = torch.stack((*reasons.values(), time_outs), dim=-1)
        ended = torch.where(done.unsqueeze(-1), torch.cat((self.episode_sums, flags), dim=-1), 0.0)
        means = ended.sum(dim=0) / done.sum()
        names = [f"Episode_Reward/{name}" for name in self.reward_weights]
        names += [f"Episode_Termination/{reason}" for reason in (*reasons, "time_out")]
        return dict(zip(names, means.unbind(), strict=True))
