"""``<run>/summary.json`` from the train command, however the run ends: the launch is replaced by a stand-in, so
these tests start no rank (the real runs are checked in test_video.py, test_interrupt.py and test_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_strict_json

from mjdist.checkpoints import CheckpointError
from mjdist.cli import train as train_cli
from mjdist.errors import RankFailedError
from mjdist.rl.metrics import TrainingMetrics
from mjdist.train import run as training
from mjdist.train.result import RankResult
from mjdist.train.summary import SUMMARY_FILE, RunEnd, read_summary, write_progress

TASK = "cartpole-balance"
SHARED_FIELDS = ["task", "run_dir", "world_size", "devices", "hosts", "iterations", "env_steps_per_s", "mean_reward",
                 "mean_episode_length", "wall_time_s", "checkpoints", "exports", "parameter_digest", "rank_digests",
                 "status", "cause", "continued_from"]  # fmt: skip
PROGRESS = TrainingMetrics(iterations=4, env_steps_per_s=1234.5, mean_reward=17.0, mean_episode_length=21.5)


def train_with(monkeypatch: pytest.MonkeyPatch, log_root: Path, launch_does) -> tuple[int | None, dict | None]:
    """Run ``train`` with ``launch_does(plan)`` in place of the launch; its exit code (None if it raised) and the
    summary it wrote (None if none)."""
    monkeypatch.setattr(training, "train_on_ranks", lambda plan, cfg, spec: launch_does(plan))
    args = [TASK, "--gpu-ids", "None", "--log-root", str(log_root), "--cpu-workers", "2"]
    try:
        code = train_cli.main(args)
    except RuntimeError:
        code = None
    summaries = list(log_root.rglob(SUMMARY_FILE))
    return code, (read_summary(summaries[0].parent) if summaries else None)


def rank_0_completed_iterations(plan) -> None:
    """What rank 0 does after each iteration: write the summary so far (after a checkpoint and its export)."""
    (plan.run_dir_path / "exported").mkdir(parents=True)
    (plan.run_dir_path / "model_3.pt").write_bytes(b"")
    (plan.run_dir_path / "exported" / "model_3.onnx").write_bytes(b"")
    write_progress(plan, PROGRESS, wall_time_s=3.14159)


def test_a_finished_run(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    def finish(plan):
        rank_0_completed_iterations(plan)
        return [RankResult(rank, "d" * 64, f"obs{rank}") for rank in range(2)]

    code, summary = train_with(monkeypatch, log_root, finish)
    assert code == 0 and summary is not None
    assert list(summary) == SHARED_FIELDS
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    assert summary["task"] == TASK and summary["run_dir"] == str(run_dir) and summary["world_size"] == 2
    assert summary["devices"] == ["cpu", "cpu"] and summary["hosts"] == ["localhost"]
    assert summary["iterations"] == 4 and summary["env_steps_per_s"] == 1234.5
    assert (summary["mean_reward"], summary["mean_episode_length"]) == (17.0, 21.5)
    assert summary["checkpoints"] == [str(run_dir / "model_3.pt")]
    assert summary["exports"] == [str(run_dir / "exported" / "model_3.onnx")]
    assert (summary["parameter_digest"], summary["status"], summary["cause"]) == ("d" * 64, "finished", None)
    assert summary["rank_digests"] == ["d" * 64, "d" * 64] and summary["continued_from"] is None
    assert 0 <= summary["wall_time_s"] < 60


def test_ranks_that_disagree_fail_the_run(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    code, summary = train_with(
        monkeypatch, log_root, lambda plan: [RankResult(0, "a" * 64, "x"), RankResult(1, "b" * 64, "y")]
    )
    assert code == 1 and summary is not None
    assert summary["status"] == "failed" and summary["cause"].startswith("ranks ended with different parameters")
    assert summary["parameter_digest"] is None and summary["iterations"] == 0


def test_a_run_missing_a_ranks_result_fails(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    code, summary = train_with(monkeypatch, log_root, lambda plan: [RankResult(0, "a" * 64, "x")])
    assert code == 1 and summary is not None
    assert summary["status"] == "failed"
    assert summary["cause"] == "2 ranks trained, but the results of ranks [0] came back"
    assert summary["rank_digests"] == []


@pytest.mark.parametrize(
    ("error", "code", "status", "cause"),
    [
        (RankFailedError("rank 1: InjectedFault: at step 40"), 1, "failed", "rank 1: InjectedFault: at step 40"),
        (KeyboardInterrupt(training.INTERRUPTED_AFTER_ITERATION), 130, "interrupted",
         training.INTERRUPTED_AFTER_ITERATION),
        (KeyboardInterrupt(), 130, "interrupted", "interrupted (Ctrl-C or SIGTERM)"),
        (RuntimeError("CUDA error: an illegal memory access\nmore"), None, "failed",
         "RuntimeError: CUDA error: an illegal memory access"),
        (RuntimeError(), None, "failed", "RuntimeError"),
    ],
)  # fmt: skip
def test_a_run_that_ends_early_keeps_rank_0s_progress(
    monkeypatch: pytest.MonkeyPatch, log_root: Path, error: BaseException, code: int | None, status: str, cause: str
) -> None:
    def fail(plan):
        rank_0_completed_iterations(plan)
        raise error

    exit_code, summary = train_with(monkeypatch, log_root, fail)
    assert exit_code == code and summary is not None
    assert (summary["status"], summary["cause"]) == (status, cause)
    assert summary["iterations"] == 4 and summary["mean_reward"] == 17.0 and summary["parameter_digest"] is None
    assert [Path(path).name for path in summary["checkpoints"]] == ["model_3.pt"]


def test_rank_0_writes_its_progress_as_running(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    written = {}

    def stop_after_one_iteration(plan):
        rank_0_completed_iterations(plan)
        written["text"] = (plan.run_dir_path / SUMMARY_FILE).read_text()
        raise KeyboardInterrupt

    train_with(monkeypatch, log_root, stop_after_one_iteration)
    assert written["text"].startswith('{\n  "task": ')  # indented: one key per line, for people reading it
    progress = json.loads(written["text"])
    assert (progress["status"], progress["cause"], progress["iterations"]) == ("running", None, 4)
    assert progress["wall_time_s"] == 3.142 and progress["mean_reward"] == 17.0


def test_a_single_rank_finishes_with_its_own_digest() -> None:
    end = RunEnd()
    end.finished(["e" * 64])
    assert (end.status, end.cause, end.parameter_digest, end.rank_digests) == ("finished", None, "e" * 64, ("e" * 64,))


def test_a_run_that_fails_before_any_iteration(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    def fail(plan):
        raise RankFailedError("rank 0: InjectedFault: injected start-up fault")

    code, summary = train_with(monkeypatch, log_root, fail)
    assert code == 1 and summary is not None
    assert summary["status"] == "failed" and summary["iterations"] == 0
    assert summary["env_steps_per_s"] is None and summary["mean_reward"] is None and summary["checkpoints"] == []


def test_the_summary_is_strict_json_with_null_for_numbers_that_are_not_finite(
    monkeypatch: pytest.MonkeyPatch, log_root: Path
) -> None:
    diverged = TrainingMetrics(iterations=2, env_steps_per_s=float("inf"), mean_reward=float("nan"),
                               mean_episode_length=float("-inf"))  # fmt: skip

    def diverge(plan):
        write_progress(plan, diverged, wall_time_s=1.0)
        raise RankFailedError("rank 0: TrainingFailure: the policy's parameters are not finite")

    code, _ = train_with(monkeypatch, log_root, diverge)
    (path,) = log_root.rglob(SUMMARY_FILE)
    summary = read_strict_json(path)
    assert code == 1 and summary["status"] == "failed" and summary["iterations"] == 2
    assert (summary["env_steps_per_s"], summary["mean_reward"], summary["mean_episode_length"]) == (None, None, None)


def test_a_refused_checkpoint_writes_nothing(monkeypatch: pytest.MonkeyPatch, log_root: Path) -> None:
    def refuse(plan):
        raise CheckpointError("checkpoint x does not fit this task's networks")

    code, summary = train_with(monkeypatch, log_root, refuse)
    assert code == 2 and summary is None and not log_root.exists()
