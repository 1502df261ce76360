"""The env benchmark: the full environment step, and the share of it that physics takes.

For each num_envs, one environment of the task (its training configuration, ``num_envs`` worlds) is stepped
under ``torch.inference_mode`` like rsl_rl's rollout, two ways in turn:

- ``MjWarpEnv.step(actions)``: actions, physics, task hooks, terminations, rewards, resets, observations;
- ``RslRlVecEnv.step(actions)``: the same through the rsl_rl adapter, which is what training calls.

While they run, :class:`PhysicsClock` times every ``env.simulate()`` call inside the steps (the ``decimation``
physics steps of each env step), so physics is measured on exactly the states the environment visits:
falls, contacts and resets included. Physics timed apart, from other states, can cost more or less than
inside the steps (a fallen quadruped has more contacts than a standing one).

Actions are uniform in [-action_clip, action_clip], drawn before timing and cycled from a pool.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from mjdist.bench.config import BenchConfig
from mjdist.bench.records import Recorder
from mjdist.bench.timing import time_repetitions
from mjdist.envs.core import MjWarpEnv
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.tasks import TaskSpec

EVENT_POOL = 64
"""CUDA event pairs the physics clock reuses; when all are recorded, it reads them (one sync) and starts over."""
ACTION_POOL = 64
"""Distinct random action batches drawn before timing; step i uses batch i mod ACTION_POOL."""
SEED = 0


def run_env(spec: TaskSpec, cfg: BenchConfig, device: str, record: Recorder) -> None:
    """One record per num_envs: env-steps/s of env.step and of the rsl_rl adapter, and physics' share of them."""
    for num_envs in cfg.num_envs:
        env_cfg = dataclasses.replace(spec.env, num_envs=num_envs)
        env = spec.load_env_class()(env_cfg, device=device, seed=SEED)
        env_steps, env_physics = _step_rates(env, env.step, cfg)
        vec_env_steps, vec_env_physics = _step_rates(env, RslRlVecEnv(env).step, cfg)
        metrics = {
            "env_steps_per_s": env_steps,
            "vec_env_steps_per_s": vec_env_steps,
            "physics_control_steps_per_s": env_physics,
            "overhead": _overheads(env_steps, env_physics),
            "vec_env_overhead": _overheads(vec_env_steps, vec_env_physics),
        }
        config = {"device": device, "num_envs": num_envs, "decimation": env_cfg.decimation,
                  "graph_capture": env_cfg.graph_capture}  # fmt: skip
        record("env", config, metrics)


class PhysicsClock:
    """Adds up the time of every ``env.simulate()`` call: host time on the CPU, CUDA events on a GPU (no sync)."""

    def __init__(self, env: MjWarpEnv) -> None:
        self._simulate = env.simulate
        self._cuda = env.device.type == "cuda"
        self._stream = torch.cuda.current_stream(env.device) if self._cuda else None
        """The stream the env's physics runs on (torch's current stream on the env's device, as in the env)."""
        self._pool = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(EVENT_POOL if self._cuda else 0)]  # fmt: skip
        self._recorded = 0
        self._seconds = 0.0
        env.simulate = self._timed_simulate  # type: ignore[method-assign]  # the instance's step() calls this

    def _timed_simulate(self) -> None:
        if self._cuda:
            if self._recorded == len(self._pool):
                self._read_events()
            start, end = self._pool[self._recorded]
            start.record(self._stream)
            self._simulate()
            end.record(self._stream)
            self._recorded += 1
            return
        start_s = time.perf_counter()
        self._simulate()
        self._seconds += time.perf_counter() - start_s

    def take(self) -> float:
        """Seconds of physics since the last take, once the device has finished it."""
        self._read_events()
        seconds, self._seconds = self._seconds, 0.0
        return seconds

    def _read_events(self) -> None:
        if self._recorded:
            self._pool[self._recorded - 1][1].synchronize()
            self._seconds += sum(start.elapsed_time(end) for start, end in self._pool[: self._recorded]) / 1000
            self._recorded = 0


def _step_rates(env: MjWarpEnv, step: Callable[[torch.Tensor], object], cfg: BenchConfig) -> tuple[list, list]:
    """Worlds x control steps per second of ``step`` and of the physics inside it, per timed repetition."""
    generator = torch.Generator(device=env.device).manual_seed(SEED)
    shape = (ACTION_POOL, env.num_envs, env.num_actions)
    actions = (torch.rand(shape, generator=generator, device=env.device) * 2 - 1) * env.cfg.action_clip
    clock = PhysicsClock(env)
    physics_s: list[float] = []

    def run(steps: int) -> None:
        clock.take()
        for i in range(steps):
            step(actions[i % ACTION_POOL])
        physics_s.append(clock.take())  # also waits for the device: the steps are done

    try:
        with torch.inference_mode():
            timings = time_repetitions(run, cfg.duration, cfg.repetitions)
    finally:
        del env.simulate  # the class's method again
    physics = [timings.units * env.num_envs / seconds for seconds in physics_s[-cfg.repetitions :]]
    return timings.rates(env.num_envs), physics


def _overheads(step_rates: list[float], physics_rates: list[float]) -> list[float]:
    """1 - step rate / physics rate, repetition by repetition: the share of a step not spent in physics."""
    return [1 - step / physics for step, physics in zip(step_rates, physics_rates, strict=True)]
