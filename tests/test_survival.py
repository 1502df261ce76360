"""Training that survives, through the real launcher: a killed rank is restarted from the last checkpoint, a hang
ends the job naming the stuck rank, diverging physics is reset, diverging learning stops cleanly, a full disk is
one line, and a requeued command continues its run. Tiny runs: 16 envs, 8 steps per iteration, a save each one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HELPERS, REPO, cannot_set_up, run_train, subprocess_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mjdist.checkpoints import newest_loadable_checkpoint, read_checkpoint
from mjdist.rl.health import DIVERGED_WORLDS_TAG
from mjdist.train.restarts import RESTARTS_FILE

pytestmark = pytest.mark.slow

TINY = ["--num-envs", "16", "--num-steps-per-env", "8", "--save-interval", "1"]
STEPS_PER_ITERATION = 8
HANG_DEADLINE_S = 35.0
"""From the hang to the launcher's exit with --timeout 20: the goal is 30 s, CI machines get some slack."""
TRAIN_TINY = [
    "--gpu-ids",
    "None",
    "--env.num-envs",
    "16",
    "--agent.num-steps-per-env",
    "8",
    "--agent.save-interval",
    "1",
]


def launch_faulty(
    log_root: Path, workers: int, iterations: int, *flags: str, **env: str
) -> subprocess.CompletedProcess:
    """tests/helpers/launch_task.py with the faulty cart-pole (see faulty_task.py for the faults)."""
    return subprocess.run(
        [sys.executable, str(HELPERS / "launch_task.py"), str(log_root), str(workers), str(iterations), *TINY, *flags],
        capture_output=True, text=True, timeout=300, env=subprocess_env(**env), cwd=REPO,
    )  # fmt: skip


def only_run(log_root: Path, experiment: str = "cartpole_balance") -> Path:
    (run_dir,) = (log_root / experiment).iterdir()
    return run_dir


def checkpoints(run_dir: Path) -> list[str]:
    return sorted((path.name for path in run_dir.glob("model_*.pt")), key=lambda name: int(name[6:-3]))


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_a_killed_rank_is_restarted_from_the_last_checkpoint_and_counters_continue(tmp_path: Path) -> None:
    log_root = tmp_path / "runs"
    kill_step = STEPS_PER_ITERATION + 4  # in iteration 2: iteration 1 is saved
    result = launch_faulty(
        log_root, 2, 3, "--max-restarts", "1",
        MJDIST_TEST_FAULT=f"kill:1:{kill_step}", MJDIST_TEST_FAULT_ONCE=str(tmp_path / "killed-once"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = only_run(log_root)
    (restart,) = [json.loads(line) for line in (run_dir / RESTARTS_FILE).read_text().splitlines()]
    assert restart["restart"] == 1 and restart["max_restarts"] == 1
    assert restart["cause"].startswith("rank 1 died without a Python error")
    assert restart["resumed_from"] == str(run_dir / "model_0.pt") and restart["next_iteration"] == 1
    assert "Restart 1/1 after: rank 1 died" in result.stderr
    assert checkpoints(run_dir) == ["model_0.pt", "model_1.pt", "model_2.pt"]
    assert read_checkpoint(run_dir / "model_2.pt", "faulty-cartpole").iteration == 2
    assert scalar_steps(run_dir, "Loss/value") == [0, 1, 2]


def test_a_failure_after_the_last_restart_exits_1_with_its_cause(tmp_path: Path) -> None:
    result = launch_faulty(tmp_path / "runs", 1, 3, "--max-restarts", "1", MJDIST_TEST_FAULT="raise:0:4")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Training failed: InjectedFault: injected fault at step 4 (after 1 restart(s))"
    )
    (restart,) = (only_run(tmp_path / "runs") / RESTARTS_FILE).read_text().splitlines()
    assert json.loads(restart)["resumed_from"] is None  # it failed before its first checkpoint: from scratch


def test_a_hung_rank_ends_the_job_within_the_timeout_and_is_named(tmp_path: Path) -> None:
    stamp = tmp_path / "hang-time"
    result = launch_faulty(
        tmp_path / "runs", 2, 50, "--timeout", "20",
        MJDIST_TEST_FAULT=f"sleep:1:{STEPS_PER_ITERATION + 4}", MJDIST_TEST_FAULT_STAMP=str(stamp),
    )  # fmt: skip
    ended = time.time()
    assert result.returncode == 1, result.stderr
    assert ended - float(stamp.read_text()) < HANG_DEADLINE_S
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Training failed: rank 1 made no progress for 20 s (--timeout); last progress of rank 1:")
    assert last.endswith("rank(s) 0 waited for it")


def test_diverging_worlds_are_reset_and_counted_while_training_goes_on(tmp_path: Path) -> None:
    result = launch_faulty(tmp_path / "runs", 1, 3, MJDIST_TEST_FAULT=f"nan:0:{STEPS_PER_ITERATION + 3}")
    assert result.returncode == 0, result.stderr
    assert "iteration 2: 3 world(s) reset after their physics diverged" in result.stderr
    run_dir = only_run(tmp_path / "runs")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [event.value for event in events.Scalars(DIVERGED_WORLDS_TAG)] == [0, 3, 0]
    diverged_share = {event.step: event.value for event in events.Scalars("Episode_Termination/diverged")}
    assert diverged_share[1] > 0 and diverged_share[2] == 0
    final = read_checkpoint(run_dir / "model_2.pt", "faulty-cartpole")
    assert all(torch.isfinite(value).all() for value in final.state["actor_state_dict"].values())


def test_a_diverging_learning_rate_stops_cleanly_and_the_last_checkpoint_loads(tmp_path: Path) -> None:
    log_root = tmp_path / "runs"
    name = ["--log-root", str(log_root), "--run-name", "lr", "--resume", "auto", *TRAIN_TINY,
            "--agent.algorithm.schedule", "fixed"]  # fmt: skip
    first = run_train("cartpole-balance", *name, "--agent.max-iterations", "2")
    assert first.returncode == 0, first.stderr
    run_dir = only_run(log_root)
    checkpoint = torch.load(run_dir / "model_1.pt", weights_only=False)
    checkpoint["optimizer_state_dict"]["param_groups"][0]["lr"] = 1e10  # it carries on into the next iterations
    torch.save(checkpoint, run_dir / "model_1.pt")
    second = run_train("cartpole-balance", *name, "--agent.max-iterations", "4")  # the same command, requeued
    assert second.returncode == 1, second.stderr
    assert f"Continuing run {run_dir} from model_1.pt (--resume auto)" in second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith("Training failed: NonFiniteTrainingError: non-finite "), last
    assert "at iteration 3 (is the learning rate too high?); stopped without saving them" in last
    assert checkpoints(run_dir) == ["model_0.pt", "model_1.pt"]
    assert newest_loadable_checkpoint(run_dir, "cartpole-balance").path == (run_dir / "model_1.pt").absolute()


def test_a_requeued_command_continues_its_run_and_a_finished_one_does_nothing(tmp_path: Path) -> None:
    log_root = tmp_path / "runs"
    name = ["--log-root", str(log_root), "--run-name", "job", "--resume", "auto", *TRAIN_TINY]
    for _ in range(2):  # the second time finds the run finished
        result = run_train("cartpole-balance", *name, "--agent.max-iterations", "2")
        assert result.returncode == 0, result.stderr
    assert "already did its 2 iterations; nothing to do" in result.stderr
    run_dir = only_run(log_root)
    assert run_dir.name.endswith("_job")
    assert checkpoints(run_dir) == ["model_0.pt", "model_1.pt"]


def test_a_full_disk_is_one_line_and_earlier_checkpoints_stay_intact(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        cannot_set_up("mounting a tiny tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        cannot_set_up(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = run_train(
            "cartpole-balance", "--log-root", str(disk), *TRAIN_TINY, "--agent.max-iterations", "20",
            "--agent.actor.hidden-dims", "256", "256", "--agent.critic.hidden-dims", "256", "256",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("Training failed: CheckpointWriteError: cannot write checkpoint "), last
        assert "No space left on device; the earlier checkpoints in" in last
        run_dir = only_run(disk)
        saved = checkpoints(run_dir)
        assert saved, "the disk should hold at least one checkpoint"
        for name in saved:
            read_checkpoint(run_dir / name, "cartpole-balance")
        assert not list(run_dir.glob(".model_*.tmp"))  # the cut-off temporary file was removed
    finally:
        subprocess.run(["umount", str(disk)], check=True)
