"""Ctrl-C during training saves the last completed iteration (rank 0) before the job ends."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, TRAIN, subprocess_env

from mjdist.checkpoints import read_checkpoint
from mjdist.train.summary import read_summary

pytestmark = pytest.mark.slow

PROGRESS = re.compile(r"^iter +(\d+)/", re.MULTILINE)
SAVED = re.compile(r"^Interrupted: saved (\S+/model_(\d+)\.pt), the last completed iteration$", re.MULTILINE)


def assert_saved_last_completed_iteration(stderr: str, task: str) -> None:
    """The checkpoint named in the log is the last iteration the progress lines reported, and it loads."""
    saved = SAVED.search(stderr)
    assert saved, stderr
    completed = [int(number) for number in PROGRESS.findall(stderr[: saved.start()])]
    assert int(saved.group(2)) == completed[-1] - 1  # "iter k/N" is iteration index k - 1
    assert read_checkpoint(Path(saved.group(1)), task).iteration == completed[-1] - 1


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_one_process_saves_the_last_completed_iteration(log_root: Path, signal_number: int) -> None:
    stderr_path = log_root.parent / "stderr.log"
    process = subprocess.Popen(
        [str(TRAIN), "cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--env.num-envs", "64",
         "--agent.max-iterations", "500"],
        stdout=subprocess.DEVNULL, stderr=stderr_path.open("w"), env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(PROGRESS.findall(stderr_path.read_text())) < 3:
        time.sleep(0.1)
    process.send_signal(signal_number)
    assert process.wait(timeout=30) == 130
    stderr = stderr_path.read_text()
    assert_saved_last_completed_iteration(stderr, "cartpole-balance")
    assert stderr.strip().splitlines()[-1] == "Interrupted."
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    summary = read_summary(run_dir)
    assert (summary["status"], summary["cause"]) == ("interrupted", "interrupted (Ctrl-C or SIGTERM)")
    saved = int(SAVED.search(stderr).group(2))
    assert summary["iterations"] == saved + 1 and summary["checkpoints"][-1] == str(run_dir / f"model_{saved}.pt")
    assert str(run_dir / "exported" / f"model_{saved}.onnx") in summary["exports"]
    assert summary["mean_reward"] is not None and summary["parameter_digest"] is None
