"""Shared helpers: run the real console scripts and test launchers as subprocesses."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "tests" / "helpers"
TRAIN = Path(sys.executable).with_name("train")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment, with tests/helpers importable (torchrunx copies PYTHONPATH to the ranks)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")]))
    return env


IN_CI = os.environ.get("MJDIST_CI") == "1"
"""Set by .ci/run, which installs and may use everything the tests set up (SLURM, SSH, network namespaces, tmpfs
mounts, OSMesa)."""


def cannot_set_up(reason: str) -> NoReturn:
    """A test's infrastructure is missing or failed to start: a skip on a developer's machine, a failure in CI,
    which provides it precisely so that the test runs."""
    if IN_CI:
        pytest.fail(f"{reason} (MJDIST_CI=1: CI provides this, so the test must run)", pytrace=False)
    pytest.skip(reason)


def read_strict_json(path: Path) -> Any:
    """``path`` parsed as strict JSON (RFC 8259): ``NaN``, ``Infinity`` and ``-Infinity``, which Python's json
    module reads and writes by default, are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path} is not strict JSON: it contains {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def every_rank_agreed(run_dir: Path, world_size: int) -> dict[str, Any]:
    """The ``summary.json`` of a finished run of ``world_size`` ranks, checked: every rank's parameter digest came
    back (``rank_digests``, in rank order), and they are one and the run's ``parameter_digest``."""
    summary = read_strict_json(run_dir / "summary.json")
    digests = summary["rank_digests"]
    assert (summary["status"], summary["world_size"]) == ("finished", world_size), summary
    assert len(digests) == world_size and all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in digests), digests
    assert set(digests) == {summary["parameter_digest"]}, digests
    return summary


def run_train(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``train`` console script."""
    return subprocess.run(
        [str(TRAIN), *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env(**env), cwd=REPO
    )


def held_run(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir`` as a training job does, until it is killed (tests/helpers/hold_run.py)."""
    process = subprocess.Popen([sys.executable, str(HELPERS / "hold_run.py"), str(run_dir)], stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


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


@pytest.fixture
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train`` and ``play`` plan for a machine without GPUs, whatever this one has; CUDA_VISIBLE_DEVICES is what
    the test sets."""
    from mjdist.launch.machine import Machine
    from mjdist.play import run as play_run
    from mjdist.train import run as train_run

    def machine() -> Machine:
        return Machine(os.environ.get("CUDA_VISIBLE_DEVICES"), 0, 8)

    monkeypatch.setattr(train_run, "read_machine", machine)
    monkeypatch.setattr(play_run, "read_machine", machine)


@pytest.fixture(scope="session")
def osmesa() -> None:
    """A test that renders on the CPU, where libOSMesa can (.ci/run installs it; a fresh machine may lack it)."""
    from mjdist.rendering import INSTALL_OSMESA, osmesa_failure

    reason = osmesa_failure()
    if reason is not None:
        cannot_set_up(f"needs libOSMesa to render on the CPU: {reason} ({INSTALL_OSMESA})")


TRAINED_ITERATIONS = 50
"""Iterations of the session's shared cart-pole run (512 environments, the task's defaults otherwise)."""


@dataclass(frozen=True)
class TrainedRun:
    """The cart-pole run that the training, play and resume tests share: made once per test session."""

    log_root: Path
    """Holds this run only (play finds it as the newest run)."""
    run_dir: Path
    stderr: str
    """What ``train`` printed (progress lines, the run directory)."""

    @property
    def final_checkpoint(self) -> Path:
        return self.run_dir / f"model_{TRAINED_ITERATIONS - 1}.pt"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One real ``train cartpole-balance`` run on the CPU, shared by every test that needs a trained policy or a
    finished run, instead of a training of their own each."""
    log_root = tmp_path_factory.mktemp("trained") / "runs"
    result = run_train("cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root),
                       "--agent.max-iterations", str(TRAINED_ITERATIONS))  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    return TrainedRun(log_root, run_dir, result.stderr)
