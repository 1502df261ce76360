"""On a cold kernel cache, a machine's other ranks wait for its local rank 0's compile on the rendezvous store,
with their own limit (--kernel-compile-wait-s), not inside a collective bounded by torchrunx's worker timeout."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist
from mjdist_tasks.cartpole import BALANCE

from mjdist.launch.context import RankContext
from mjdist.train import rank as rank_module
from mjdist.train.config import TrainConfig


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dist.TCPStore]:
    """A rendezvous store at MASTER_ADDR:MASTER_PORT, a one-process gloo group (the marker's all-reduce), and a
    kernel-cache marker that does not exist (a cold cache)."""
    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(master.port))
    monkeypatch.setattr(rank_module, "built_marker", lambda *_: tmp_path / "cache" / "marker")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield master
    finally:
        dist.destroy_process_group()


def _cfg(wait_s: float) -> TrainConfig:
    env = dataclasses.replace(BALANCE.env, num_envs=4)
    return TrainConfig(env=env, agent=BALANCE.agent, kernel_compile_wait_s=wait_s)


def _ctx(local_rank: int) -> RankContext:
    return RankContext(rank=local_rank, local_rank=local_rank, world_size=2, device="cpu", seed=0)


def test_local_rank_0_builds_marks_the_cache_and_signals(store: dist.TCPStore, tmp_path: Path) -> None:
    env = rank_module.build_env(BALANCE, _cfg(5), _ctx(0))
    assert env.num_envs == 4 and (tmp_path / "cache" / "marker").exists()
    _, key = rank_module.kernels_built_signal(5)
    assert store.get(key) == b"1"


def test_other_ranks_build_once_local_rank_0_has_signalled(store: dist.TCPStore) -> None:
    _, key = rank_module.kernels_built_signal(5)
    store.set(key, "1")
    assert rank_module.build_env(BALANCE, _cfg(5), _ctx(1)).num_envs == 4


def test_other_ranks_give_up_after_their_own_limit(store: dist.TCPStore) -> None:
    with pytest.raises(TimeoutError) as waited:
        rank_module.build_env(BALANCE, _cfg(0.3), _ctx(1))
    message = str(waited.value)
    assert message.startswith(
        "local rank 0 did not finish compiling the environment's Warp kernels within 0.3 s (--kernel-compile-wait-s)"
    )
    assert "\n" not in message
