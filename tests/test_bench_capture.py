"""The physics benchmark captures its graph only where the env's core would: on a GPU without Warp's memory pool
it measures eager stepping and records it as such (a capture would fail at mjw.step's first allocation)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import warp as wp

from mjdist.bench.physics import WarpPhysics


def test_no_capture_on_a_gpu_without_a_memory_pool(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    physics = object.__new__(WarpPhysics)
    physics.device = SimpleNamespace(is_cuda=True)
    monkeypatch.setattr(wp, "is_mempool_enabled", lambda device: False)
    monkeypatch.setattr(wp, "ScopedCapture", lambda: pytest.fail("captured without a memory pool"))
    with caplog.at_level(logging.WARNING, logger="mjdist.bench.physics"):
        assert physics._capture() is None
    assert "no CUDA memory pool" in caplog.text
