"""Loading a checkpoint never runs code from it: every load is weights-only, and a checkpoint whose pickle would
call something is refused with one line (exit 2) before anything runs or is written. Real checkpoints of every
bundled task still load."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import torch

from mjdist.checkpoints import CheckpointError, read_checkpoint
from mjdist.cli import play as play_cli
from mjdist.cli import train as train_cli
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.rl.runner import DistributedRunner
from mjdist.tasks import TaskSpec, registered_tasks
from mjdist.train.rank import network_digest

TASKS = registered_tasks()


class _TouchOnLoad:
    """Pickles as a call of ``os.system("touch <marker>")``: unpickling it with a full load creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def _runner(spec: TaskSpec) -> DistributedRunner:
    env = spec.load_env_class()(dataclasses.replace(spec.env, num_envs=2), device="cpu", seed=0)
    return DistributedRunner(RslRlVecEnv(env), spec.agent.to_rsl_rl(""), log_dir=None, device="cpu", task=spec.name)


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cart-pole checkpoint saved the way training saves it (DistributedRunner.save)."""
    path = tmp_path_factory.mktemp("real") / "model_4.pt"
    runner = _runner(TASKS["cartpole-balance"])
    runner.current_learning_iteration = 4
    runner.save(str(path))
    return path


@pytest.fixture
def crafted(real_checkpoint: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(run directory holding model_4.pt, marker)``: the real checkpoint plus one object that touches the marker."""
    checkpoint = torch.load(real_checkpoint, weights_only=True)
    marker = tmp_path / "pwned"
    checkpoint["infos"]["note"] = _TouchOnLoad(marker)
    run_dir = tmp_path / "downloaded-run"
    run_dir.mkdir()
    torch.save(checkpoint, run_dir / "model_4.pt")
    return run_dir, marker


REFUSAL = "holds objects that a safe (weights-only) load refuses, the first being posix.system"


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (play_cli.main, ["--checkpoint", "{run}/model_4.pt", "--gpu-ids", "None", "--num-steps", "1"]),
        (play_cli.main, ["--run", "{run}", "--gpu-ids", "None", "--num-steps", "1", "--video"]),
        (train_cli.main, ["--resume", "{run}", "--gpu-ids", "None", "--agent.max-iterations", "1"]),
        (train_cli.main, ["--resume", "{run}/model_4.pt", "--gpu-ids", "None", "--cpu-workers", "2"]),
    ],
    ids=["play-checkpoint", "play-run-video", "train-resume-run", "train-resume-file-workers"],
)
def test_crafted_checkpoint_is_refused_and_runs_nothing(
    command, args: list[str], crafted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, marker = crafted
    log_root = tmp_path / "never-written"
    argv = ["cartpole-balance", *(arg.format(run=run_dir) for arg in args), "--log-root", str(log_root)]
    before = sorted(tmp_path.rglob("*"))
    assert command(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    prog = "play" if command is play_cli.main else "train"
    assert line.startswith(f"{prog}: error: checkpoint {run_dir}/model_4.pt ") and REFUSAL in line, line
    assert not marker.exists()
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no run, no video, no marker


def test_the_runners_own_load_is_weights_only(crafted: tuple[Path, Path]) -> None:
    """The path rsl_rl takes (OnPolicyRunner.load), used by resume on every rank and by play's policy loader."""
    run_dir, marker = crafted
    runner = _runner(TASKS["cartpole-balance"])
    with pytest.raises(CheckpointError, match=re.escape(REFUSAL)):
        runner.load(str(run_dir / "model_4.pt"))
    with pytest.raises(CheckpointError, match=re.escape(REFUSAL)):
        runner.load_checkpoint(run_dir / "model_4.pt", "cpu")
    assert not marker.exists()


def test_any_object_beyond_weights_is_refused_and_named(real_checkpoint: Path, tmp_path: Path) -> None:
    """Even a harmless one (a path someone stored in the infos): mjdist saves none, and a safe load imports none."""
    checkpoint = torch.load(real_checkpoint, weights_only=True)
    checkpoint["infos"]["source"] = tmp_path
    torch.save(checkpoint, tmp_path / "model_4.pt")
    with pytest.raises(CheckpointError, match=r"load refuses, the first being pathlib.PosixPath; mjdist never runs"):
        read_checkpoint(tmp_path / "model_4.pt", "cartpole-balance")


@pytest.mark.parametrize(
    "task",
    [pytest.param(name, marks=[pytest.mark.slow] if "quadruped" in name else []) for name in sorted(TASKS)],
)  # the quadruped's env compiles its kernels for ~20 s on a cold Warp cache
def test_real_checkpoints_of_every_task_load_weights_only(task: str, tmp_path: Path) -> None:
    saved = _runner(TASKS[task])
    saved.current_learning_iteration = 7
    saved.save(str(tmp_path / "model_7.pt"))
    checkpoint = read_checkpoint(tmp_path / "model_7.pt", task)
    assert checkpoint.train_cfg == saved.train_cfg and checkpoint.iteration == 7
    torch.manual_seed(1)  # the second runner starts from other weights
    loaded = _runner(TASKS[task])
    loaded.load_checkpoint(tmp_path / "model_7.pt", "cpu")
    assert network_digest(loaded.alg.actor, loaded.alg.critic) == network_digest(saved.alg.actor, saved.alg.critic)
    assert loaded.current_learning_iteration == 7
