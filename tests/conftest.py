"""Shared helpers: run the real console scripts and test launchers as subprocesses."""

from __future__ import annotations

import os
import pickle
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


class _TouchOnUnpickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def touch_pickle(marker: Path) -> bytes:
    """A pickle whose full unpickling runs ``os.system("touch <marker>")``: the file proves that code ran."""
    return pickle.dumps(_TouchOnUnpickle(marker))


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


RENDERING_VARIABLES = {name: os.environ.get(name) for name in ("MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID")}
"""MuJoCo's rendering variables as the test session found them, before any test ran."""


@pytest.fixture(autouse=True)
def restore_rendering_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `play`/`train --video` set MUJOCO_GL (and MUJOCO_EGL_DEVICE_ID) in os.environ, as they must for
    the ranks they start. Every test starts from the session's own values (a module-scoped fixture may have
    changed them before this fixture runs), so no later test or subprocess inherits another test's choice:
    MUJOCO_GL=osmesa in a process that imports mujoco before torch's triton crashes it."""
    for name, value in RENDERING_VARIABLES.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
