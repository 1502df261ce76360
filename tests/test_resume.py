"""Resume continues a run (parameters, optimizer, counters); the exported TorchScript policy matches the checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TRAINED_ITERATIONS, TrainedRun, run_train
from mjdist_tasks.cartpole import BALANCE
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensordict import TensorDict

from mjdist.cli.train import main
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.rl.exports import TORCHSCRIPT_POLICY
from mjdist.rl.runner import DistributedRunner

pytestmark = pytest.mark.slow

FIRST = TRAINED_ITERATIONS
"""Iterations of the first run (the session's shared one): its final checkpoint is model_<FIRST - 1>.pt."""


@pytest.fixture(scope="module")
def first_run(trained_run: TrainedRun) -> Path:
    return trained_run.run_dir


def resumed_runner(checkpoint: Path) -> DistributedRunner:
    env = BALANCE.load_env_class()(dataclasses.replace(BALANCE.env, num_envs=32), device="cpu", seed=0)
    runner = DistributedRunner(
        RslRlVecEnv(env), BALANCE.agent.to_rsl_rl(""), log_dir=None, device="cpu", task=BALANCE.name
    )
    runner.load_checkpoint(checkpoint, "cpu")
    return runner


def test_resumed_state_equals_the_checkpoint(first_run: Path) -> None:
    checkpoint_path = first_run / f"model_{FIRST - 1}.pt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    runner = resumed_runner(checkpoint_path)
    for name, saved in checkpoint["actor_state_dict"].items():  # weights and the observation normalizer
        torch.testing.assert_close(runner.alg.get_policy().state_dict()[name], saved, rtol=0, atol=0)
    assert runner.alg.learning_rate == checkpoint["optimizer_state_dict"]["param_groups"][0]["lr"]
    assert runner.current_learning_iteration == FIRST - 1  # the checkpoint's iteration, read from its state


@pytest.mark.parametrize("workers", [[], ["--cpu-workers", "2"]], ids=["one-process", "two-cpu-workers"])
def test_resume_continues_numbering_in_a_new_run(first_run: Path, tmp_path: Path, workers: list[str]) -> None:
    log_root = tmp_path / "resumed"
    result = run_train(
        "cartpole-balance", "--gpu-ids", "None", *workers, "--log-root", str(log_root), "--env.num-envs", "32",
        "--agent.max-iterations", "2", "--resume", str(first_run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    assert FIRST % 25 == 0  # the default save interval: the first resumed iteration is saved, and the last
    assert sorted(p.name for p in run_dir.glob("model_*.pt")) == [f"model_{FIRST}.pt", f"model_{FIRST + 1}.pt"]
    launch = yaml.safe_load((run_dir / "params" / "launch.yaml").read_text())
    assert launch["resume_from"] == str(first_run / f"model_{FIRST - 1}.pt")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [event.step for event in events.Scalars("Loss/value")] == [FIRST, FIRST + 1]


def test_bad_checkpoints_are_refused_before_anything_is_written(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = first_run / f"model_{FIRST - 1}.pt"
    original = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    truncated = tmp_path / "model_7.pt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    foreign = tmp_path / "foreign" / "model_3.pt"
    foreign.parent.mkdir()
    data = torch.load(checkpoint, weights_only=True)
    data["infos"]["task"] = "cartpole-swingup"
    torch.save(data, foreign)
    (tmp_path / "empty-run").mkdir()
    not_a_dict = tmp_path / "model_8.pt"
    torch.save(5, not_a_dict)
    cases = {
        str(tmp_path / "missing.pt"): "does not exist",
        str(truncated): "cannot read checkpoint",
        str(foreign): "was trained on task 'cartpole-swingup', not 'cartpole-balance'",
        str(tmp_path / "empty-run"): "has no model_<iteration>.pt checkpoints",
        str(not_a_dict): "is not an rsl_rl checkpoint (it holds a int)",
    }
    log_root = tmp_path / "never-written"
    for resume_path, message in cases.items():
        assert (
            main(["cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--resume", resume_path]) == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not log_root.exists()
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == original


def test_a_checkpoint_of_other_networks_is_refused(first_run: Path, tmp_path: Path) -> None:
    log_root = tmp_path / "runs"
    result = run_train(
        "cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--env.num-envs", "32",
        "--agent.actor.hidden-dims", "8", "--resume", str(first_run),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("train: error: checkpoint ")
    assert "does not fit this task's networks" in result.stderr
    assert not log_root.exists()


def test_exported_policy_gives_the_checkpoint_actions(first_run: Path) -> None:
    exported = torch.jit.load(str(first_run / "exported" / TORCHSCRIPT_POLICY))
    policy = resumed_runner(first_run / f"model_{FIRST - 1}.pt").get_inference_policy("cpu")
    observations = torch.randn(64, 5) * 2
    expected = policy(TensorDict({"policy": observations, "critic": observations}, batch_size=[64]))
    torch.testing.assert_close(exported(observations), expected, rtol=1e-5, atol=1e-6)
