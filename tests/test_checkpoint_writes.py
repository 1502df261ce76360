"""Checkpoints are written atomically and the newest loadable one is chosen (the hang watchdog: test_watchdog.py).

No training: checkpoints here are small rsl_rl-shaped dicts, which is all that reading one checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, subprocess_env

from mjdist.checkpoints import CheckpointWriteError, newest_loadable_checkpoint, read_checkpoint, write_checkpoint
from mjdist.cli.train import main as train

TASK = "cartpole-balance"


def state(iteration: int) -> dict:
    return {
        "actor_state_dict": {"w": torch.full((64, 64), float(iteration))},
        "critic_state_dict": {},
        "optimizer_state_dict": {},
        "iter": iteration,
        "infos": {"task": TASK},
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run with checkpoints 0 and 1."""
    run = tmp_path / "cartpole_balance" / "2026-01-01_00-00-00"
    run.mkdir(parents=True)
    for iteration in (0, 1):
        write_checkpoint(state(iteration), run / f"model_{iteration}.pt")
    return run


KILLED_SAVE = """
import os, signal, sys, torch
from pathlib import Path
from mjdist.checkpoints import write_checkpoint
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die with the bytes written, before the rename
write_checkpoint({"iter": 2, "weights": torch.zeros(100_000)}, Path(sys.argv[1]))
"""


@pytest.mark.slow  # a subprocess that imports torch
def test_a_save_killed_midway_leaves_no_checkpoint_and_the_previous_one_is_chosen(run_dir: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(run_dir / "model_2.pt")], env=subprocess_env(), cwd=REPO, timeout=60
    )
    assert killed.returncode == -9
    assert not (run_dir / "model_2.pt").exists()
    assert [path.name.startswith(".model_2.pt.") for path in run_dir.glob(".model_*")] == [True]  # the cut-off copy
    assert newest_loadable_checkpoint(run_dir, TASK).path == (run_dir / "model_1.pt").absolute()


def test_resume_skips_a_broken_newest_checkpoint_and_names_it(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (run_dir / "model_2.pt").write_bytes((run_dir / "model_1.pt").read_bytes()[:200])  # e.g. a half copy
    (run_dir / "model_3.pt").write_text("")
    log_root = tmp_path / "new"
    assert train([TASK, "--gpu-ids", "None", "--log-root", str(log_root), "--resume", str(run_dir), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["resume_from"] == str(run_dir / "model_1.pt")
    assert "Skipping checkpoint model_3.pt: cannot read checkpoint" in caplog.text
    assert "Skipping checkpoint model_2.pt: cannot read checkpoint" in caplog.text
    assert not log_root.exists()


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_the_others(run_dir: Path) -> None:
    before = (run_dir / "model_1.pt").read_bytes()
    with pytest.raises(CheckpointWriteError) as raised:
        write_checkpoint(state(2), run_dir / "gone" / "model_2.pt")  # the directory disappeared
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"cannot write checkpoint {run_dir}/gone/model_2.pt: No such file or directory; "
        f"the earlier checkpoints in {run_dir}/gone are intact"
    )
    assert (run_dir / "model_1.pt").read_bytes() == before
    assert read_checkpoint(run_dir / "model_1.pt", TASK).iteration == 1


def test_a_failed_rename_removes_the_temporary_file(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(source: str, target: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("os.replace", read_only)
    with pytest.raises(CheckpointWriteError, match=r"model_2\.pt: Permission denied; the earlier checkpoints"):
        write_checkpoint(state(2), run_dir / "model_2.pt")
    assert sorted(path.name for path in run_dir.iterdir()) == ["model_0.pt", "model_1.pt"]


def test_an_error_without_a_reason_is_named_by_its_type(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(source: str, target: str) -> None:
        raise OSError

    monkeypatch.setattr("os.replace", fails)
    with pytest.raises(CheckpointWriteError, match=r"model_2\.pt: OSError; the earlier checkpoints in "):
        write_checkpoint(state(2), run_dir / "model_2.pt")
