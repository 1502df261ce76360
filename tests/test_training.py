"""Real, short training of cartpole-balance on the CPU through the ``train`` command: it learns, and writes the run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TRAINED_ITERATIONS, TrainedRun, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mjdist.tasks import registered_tasks

ITERATIONS = TRAINED_ITERATIONS


def random_policy_episode_length(steps: int = 400) -> float:
    """Mean length of the balance episodes a uniformly random policy finishes."""
    spec = registered_tasks()["cartpole-balance"]
    env = spec.load_env_class()(dataclasses.replace(spec.env, num_envs=64), device="cpu", seed=0)
    lengths: list[float] = []
    for _ in range(steps):
        before = env.episode_length_buf.clone()
        _, _, terminated, time_outs, _ = env.step(torch.rand(64, 1) * 2 - 1)
        lengths += (before + 1)[terminated | time_outs].tolist()
    return sum(lengths) / len(lengths)


@pytest.mark.slow
def test_cartpole_balance_learns_and_writes_the_run(trained_run: TrainedRun) -> None:
    run_dir = trained_run.run_dir
    assert f"run directory: {run_dir}" in trained_run.stderr
    progress = [line for line in trained_run.stderr.splitlines() if line.startswith("iter ")]
    assert len(progress) == ITERATIONS and "env-steps/s (512 envs)" in progress[-1] and "ETA" in progress[-1]

    assert yaml.safe_load((run_dir / "params" / "env.yaml").read_text())["episode_length"] == 500
    assert yaml.safe_load((run_dir / "params" / "agent.yaml").read_text())["max_iterations"] == ITERATIONS
    checkpoints = sorted(int(p.stem.split("_")[1]) for p in run_dir.glob("model_*.pt"))
    assert checkpoints == [0, 25, ITERATIONS - 1]  # every save_interval, plus the final one
    assert "actor_state_dict" in torch.load(run_dir / f"model_{ITERATIONS - 1}.pt", weights_only=True)

    events = EventAccumulator(str(run_dir))
    events.Reload()
    for tag in ("Train/mean_reward", "Train/mean_episode_length", "Perf/total_fps", "Episode_Reward/alive"):
        assert tag in events.Tags()["scalars"], tag
    lengths = [event.value for event in events.Scalars("Train/mean_episode_length")]
    random_length = random_policy_episode_length()
    assert random_length < 60
    assert lengths[-1] > 5 * random_length, (lengths, random_length)


@pytest.mark.slow
@pytest.mark.usefixtures("osmesa")
def test_one_process_trains_under_a_users_mujoco_gl_osmesa(log_root: Path) -> None:
    """MUJOCO_GL=osmesa makes mujoco load Mesa's LLVM on import; triton (torch's) must be loaded first or the
    process segfaults, in one process as in the workers."""
    result = run_train("cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--env.num-envs", "16",
                       "--agent.max-iterations", "1", MUJOCO_GL="osmesa")  # fmt: skip
    assert result.returncode == 0, result.stderr
