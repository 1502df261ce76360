"""GPU-only checks (skipped without a GPU): an env is correct on any current device, and the env bench's
physics clock reuses its CUDA events. scripts/gpu-check runs these on a GPU machine."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from mjdist_tasks.cartpole import BALANCE

from mjdist.bench.env_step import EVENT_POOL, PhysicsClock

pytestmark = pytest.mark.gpu


def _env(device: str):
    return BALANCE.load_env_class()(dataclasses.replace(BALANCE.env, num_envs=64), device=device, seed=0)


def _rollout(env) -> torch.Tensor:
    generator = torch.Generator(device=env.device).manual_seed(0)
    for _ in range(30):
        env.step(2 * torch.rand(env.num_envs, 1, generator=generator, device=env.device) - 1)
    return env.qpos.cpu()


def test_env_on_cuda_1_while_cuda_0_is_current() -> None:
    """Graph replay and torch work run on the env's own device and stream, whatever device is current."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    with torch.cuda.device(1):
        expected = _rollout(_env("cuda:1"))
    torch.cuda.set_device(0)
    env = _env("cuda:1")
    assert torch.cuda.current_device() == 0
    got = _rollout(env)
    assert torch.equal(got, expected)
    assert env.qpos.device == torch.device("cuda:1")


def test_physics_clock_reuses_its_cuda_events() -> None:
    env = _env("cuda:0")
    clock = PhysicsClock(env)
    for _ in range(2 * EVENT_POOL + 3):
        env.simulate()
    assert clock.take() > 0
    assert clock.take() == 0.0
