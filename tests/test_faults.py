"""Faults through the real launcher: a rank raises, a rank is SIGKILLed, the launcher gets SIGINT/SIGTERM.

Each must end the whole job quickly with the right message and exit code, and leave no process behind.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import HELPERS, REPO, subprocess_env
from test_interrupt import assert_saved_last_completed_iteration

from mjdist.train.summary import read_summary

pytestmark = pytest.mark.slow

DEADLINE_S = 15.0
"""From the fault (or the signal) to the launcher's exit; the goal is 10 s, CI machines get some slack."""


class Launch:
    """The test launcher in a subprocess, with every descendant it ever had recorded."""

    def __init__(self, log_root: Path, iterations: int, **env: str) -> None:
        self.stderr_path = log_root.parent / "stderr.log"
        self.process = subprocess.Popen(
            [sys.executable, str(HELPERS / "launch_task.py"), str(log_root), "2", str(iterations)],
            stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("w"), env=subprocess_env(**env), cwd=REPO,
        )  # fmt: skip
        self.descendants: set[psutil.Process] = set()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def watch_until(self, condition, timeout: float = 240) -> None:
        """Record descendants until ``condition()`` holds or the launcher exits."""
        end = time.time() + timeout
        while time.time() < end and self.process.poll() is None and not condition():
            try:
                self.descendants |= set(psutil.Process(self.process.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)

    def wait(self) -> tuple[int, float]:
        """Exit code and the time it exited."""
        return_code = self.process.wait(timeout=120)
        return return_code, time.time()

    def survivors(self) -> list[psutil.Process]:
        time.sleep(0.5)
        return [p for p in self.descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def launch_with_fault(log_root: Path, fault: str) -> tuple[Launch, int, float]:
    stamp = log_root.parent / "fault-time"
    launch = Launch(log_root, iterations=200, MJDIST_TEST_FAULT=fault, MJDIST_TEST_FAULT_STAMP=str(stamp))
    launch.watch_until(stamp.exists)
    assert stamp.exists(), launch.stderr
    return_code, exited = launch.wait()
    return launch, return_code, exited - float(stamp.read_text())


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("raise:1:40", "injected fault at step 40"),  # inside training, while rank 0 waits in a collective
        ("startup:1:0", "injected start-up fault"),  # while the rank builds its environment
    ],
)
def test_a_rank_that_raises_ends_the_job_with_its_traceback(log_root: Path, fault: str, message: str) -> None:
    launch, return_code, seconds = launch_with_fault(log_root, fault)
    stderr = launch.stderr
    assert return_code == 1, stderr
    assert seconds < DEADLINE_S, seconds
    assert f"[rank 1] faulty_task.InjectedFault: {message}" in stderr  # the traceback, live on the console
    assert stderr.strip().splitlines()[-1] == f"Training failed: rank 1: InjectedFault: {message}"
    assert launch.survivors() == []
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    summary = read_summary(run_dir)
    assert (summary["status"], summary["cause"]) == ("failed", f"rank 1: InjectedFault: {message}")
    assert summary["parameter_digest"] is None and summary["world_size"] == 2


def test_a_killed_rank_ends_the_job_and_is_named(log_root: Path) -> None:
    launch, return_code, seconds = launch_with_fault(log_root, "kill:1:40")
    stderr = launch.stderr
    assert return_code == 1, stderr
    assert seconds < DEADLINE_S, seconds
    assert "Training failed: rank 1 died without a Python error (killed by a signal" in stderr
    assert launch.survivors() == []


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_launcher_stops_every_rank(log_root: Path, signal_number: int) -> None:
    launch = Launch(log_root, iterations=500)
    second_iteration = re.compile(r"^iter +2/500 ", re.MULTILINE)
    launch.watch_until(lambda: second_iteration.search(launch.stderr) is not None)
    assert second_iteration.search(launch.stderr), launch.stderr
    sent = time.time()
    launch.process.send_signal(signal_number)
    return_code, exited = launch.wait()
    assert return_code == 130, launch.stderr
    assert exited - sent < DEADLINE_S
    assert launch.stderr.strip().splitlines()[-1].startswith("Interrupted: every rank ")
    assert_saved_last_completed_iteration(launch.stderr, "faulty-cartpole")  # rank 0 saved before the end
    assert launch.survivors() == []
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["iterations"] >= 2
    assert Path(summary["checkpoints"][-1]).name == f"model_{summary['iterations'] - 1}.pt"
