"""The train CLI: help, task selection, overrides, and one-line errors for bad input (exit 2, nothing written)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TRAIN, cannot_set_up, run_train, subprocess_env

from mjdist.cli.train import main


def test_help_lists_the_registered_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "cartpole-balance" in out and "cartpole-swingup" in out


def test_task_help_shows_task_defaults_and_launch_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cartpole-balance", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--env.num-envs", "--agent.max-iterations", "--agent.seed", "--agent.logger", "--log-root",
                 "--run-name", "--gpu-ids", "--cpu-workers", "--torchrunx-log-dir", "--dry-run"):  # fmt: skip
        assert flag in out, flag
    assert "{tensorboard,wandb,none}" in out
    assert "(default: 512)" in out  # the task's own num_envs default


def test_unknown_task_is_one_line_listing_known_tasks(capsys: pytest.CaptureFixture[str], log_root: Path) -> None:
    assert main(["cartpole-balanse", "--log-root", str(log_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "unknown task 'cartpole-balanse'" in err and "cartpole-balance, cartpole-swingup" in err
    assert not log_root.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env.num-envs", "0"], "--env.num-envs must be at least 1, got 0"),
        (["--env.num-envs", "-4"], "--env.num-envs must be at least 1, got -4"),
        (["--agent.max-iterations", "-1"], "--agent.max-iterations must be 0 or more, got -1"),
        (["--env.decimation", "0"], "--env.decimation must be at least 1, got 0"),
        (["--gpu-ids", "None", "--cpu-workers", "0"], "--cpu-workers must be at least 1, got 0"),
    ],
)
def test_bad_values_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], log_root: Path
) -> None:
    assert main(["cartpole-balance", "--log-root", str(log_root), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"train: error: {message}"
    assert not log_root.exists()


def test_log_root_that_cannot_be_created_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["cartpole-balance", "--log-root", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a file, not a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def unprivileged() -> list[str]:
    """A command prefix that runs a program as nobody when this process is root (whose privileges ignore directory
    permissions, and CI runs as root); none otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        cannot_set_up("no setpriv to drop root's privileges (Debian package util-linux)")
    nobody = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def test_read_only_log_root_is_refused() -> None:
    with tempfile.TemporaryDirectory() as parent:  # not under pytest's tmp_path, which only root may enter
        Path(parent).chmod(0o755)
        read_only = Path(parent) / "read-only"
        read_only.mkdir(mode=0o555)
        result = subprocess.run(
            [*unprivileged(), str(TRAIN), "cartpole-balance", "--log-root", str(read_only / "runs"), "--gpu-ids",
             "None"], capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "is not writable" in result.stderr
        assert list(read_only.iterdir()) == []


@pytest.mark.slow
def test_overrides_land_in_the_written_params(log_root: Path) -> None:
    result = run_train(
        "cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--run-name", "smoke",
        "--env.num-envs", "8", "--env.rewards.pole-angle", "-2.5", "--agent.max-iterations", "1",
        "--agent.seed", "7", "--agent.logger", "none", "--agent.actor.hidden-dims", "16", "16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    assert run_dir.name.endswith("_smoke")
    assert str(run_dir) in result.stderr  # the user is told where the run went
    env = yaml.safe_load((run_dir / "params" / "env.yaml").read_text())
    agent = yaml.safe_load((run_dir / "params" / "agent.yaml").read_text())
    assert env["num_envs"] == 8 and env["rewards"]["pole_angle"] == -2.5
    assert agent["seed"] == 7 and agent["max_iterations"] == 1 and agent["logger"] == "none"
    assert agent["actor"]["hidden_dims"] == [16, 16]
    assert (run_dir / "model_0.pt").exists()
    assert not list(run_dir.glob("events.out.tfevents.*"))  # --agent.logger none writes no metrics


@pytest.mark.slow
def test_wandb_offline_run_lives_in_the_run_directory(log_root: Path) -> None:
    result = run_train(
        "cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--agent.logger", "wandb",
        "--env.num-envs", "8", "--agent.max-iterations", "2", WANDB_MODE="offline",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(wandb_run.glob("*.wandb")), "wandb recorded the run's metrics"
