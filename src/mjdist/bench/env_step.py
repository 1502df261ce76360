"""The env benchmark: the full environment step against the physics part of that same step.

For each num_envs, one environment of the task (its training configuration, ``num_envs`` worlds) is timed
three ways, in this order, under ``torch.inference_mode`` like rsl_rl's rollout:

- physics alone: ``env.simulate()``, the ``decimation`` physics steps that one env step runs;
- ``MjWarpEnv.step(actions)``: actions, physics, task hooks, terminations, rewards, resets, observations;
- ``RslRlVecEnv.step(actions)``: the same through the rsl_rl adapter, which is what training calls.

Actions are uniform in [-action_clip, action_clip], drawn before timing and cycled from a pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from mjdist.bench.config import BenchConfig
from mjdist.bench.records import Recorder
from mjdist.bench.timing import time_repetitions
from mjdist.envs.core import MjWarpEnv
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.tasks import TaskSpec

ACTION_POOL = 64
"""Distinct random action batches drawn before timing; step i uses batch i mod ACTION_POOL."""
SEED = 0


def run_env(spec: TaskSpec, cfg: BenchConfig, device: str, record: Recorder) -> None:
    """One record per num_envs: env-steps/s of env.step, of the rsl_rl adapter, and of physics alone."""
    for num_envs in cfg.num_envs:
        env_cfg = dataclasses.replace(spec.env, num_envs=num_envs)
        rates = _rates(spec.load_env_class()(env_cfg, device=device, seed=SEED), cfg)
        physics = rates["physics_control_steps_per_s"]
        metrics = {
            "env_steps_per_s": rates["env_steps_per_s"],
            "vec_env_steps_per_s": rates["vec_env_steps_per_s"],
            "physics_control_steps_per_s": physics,
            "overhead": _overheads(rates["env_steps_per_s"], physics),
            "vec_env_overhead": _overheads(rates["vec_env_steps_per_s"], physics),
        }
        config = {"device": device, "num_envs": num_envs, "decimation": env_cfg.decimation,
                  "graph_capture": env_cfg.graph_capture}  # fmt: skip
        record("env", config, metrics)


def _rates(env: MjWarpEnv, cfg: BenchConfig) -> dict[str, list[float]]:
    """Worlds x control steps per second of physics alone, env.step and the adapter's step, per repetition."""
    vec_env = RslRlVecEnv(env)
    generator = torch.Generator(device=env.device).manual_seed(SEED)
    shape = (ACTION_POOL, env.num_envs, env.num_actions)
    actions = (torch.rand(shape, generator=generator, device=env.device) * 2 - 1) * env.cfg.action_clip
    sync = torch.cuda.synchronize if env.device.type == "cuda" else _no_sync

    def physics(steps: int) -> None:
        for _ in range(steps):
            env.simulate()
        sync()

    def stepping(step: Callable[[torch.Tensor], object]) -> Callable[[int], None]:
        def run(steps: int) -> None:
            for i in range(steps):
                step(actions[i % ACTION_POOL])
            sync()

        return run

    runs = {
        "physics_control_steps_per_s": physics,
        "env_steps_per_s": stepping(env.step),
        "vec_env_steps_per_s": stepping(vec_env.step),
    }
    with torch.inference_mode():
        return {
            name: time_repetitions(run, cfg.duration, cfg.repetitions).rates(env.num_envs) for name, run in runs.items()
        }


def _overheads(step_rates: list[float], physics_rates: list[float]) -> list[float]:
    """1 - step rate / physics rate, repetition by repetition: the share of a step not spent in physics."""
    return [1 - step / physics for step, physics in zip(step_rates, physics_rates, strict=True)]


def _no_sync() -> None:
    """The CPU computes synchronously: nothing to wait for."""
