"""On a GPU without Warp's CUDA memory pool (some vGPU and MIG set-ups) the env steps physics without a graph
capture, which would fail at its first allocation, and says so once; reached here on the CPU by giving a built
env a device that claims to be such a GPU."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
import warp as wp
from mjdist_tasks.cartpole import BALANCE


class GpuWithoutMempool:
    is_cuda = True

    def __str__(self) -> str:
        return "cuda:7"


def test_a_gpu_without_a_memory_pool_steps_without_graph_capture(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = BALANCE.load_env_class()(dataclasses.replace(BALANCE.env, num_envs=4), device="cpu", seed=0)
    cpu_device = env._wp_device
    asked = []
    monkeypatch.setattr(wp, "is_mempool_enabled", lambda device: asked.append(str(device)) or False)
    monkeypatch.setattr(wp, "ScopedCapture", lambda *args, **kwargs: pytest.fail("captured without a memory pool"))
    monkeypatch.setattr(env, "_wp_device", GpuWithoutMempool())
    with caplog.at_level(logging.WARNING):
        assert env._capture_physics() is None
    assert asked == ["cuda:7"]
    assert caplog.messages == [
        "cuda:7 has no CUDA memory pool for Warp: stepping physics without graph capture (slower)"
    ]
    monkeypatch.setattr(env, "_wp_device", cpu_device)
    env._graph = None  # what the constructor keeps from the fallback
    before = env.qpos.clone()
    env.step(torch.ones(4, env.num_actions))
    assert not torch.equal(env.qpos, before)  # physics stepped without the graph
