"""Shared helpers: run the real console scripts and test launchers as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "tests" / "helpers"
TRAIN = Path(sys.executable).with_name("train")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment, with tests/helpers importable (torchrunx copies PYTHONPATH to the ranks)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")]))
    return env


def run_train(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``train`` console script."""
    return subprocess.run(
        [str(TRAIN), *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env(**env), cwd=REPO
    )


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    """An empty directory for runs (not created until a run writes it)."""
    return tmp_path / "runs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA GPU is visible."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is visible)")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_rendering_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `play`/`train --video` set MUJOCO_GL (and MUJOCO_EGL_DEVICE_ID) in os.environ, as they must for
    the ranks they start; put them back after each test, so no later test inherits another's choice."""
    for name in ("MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
