"""The play CLI: a trained policy clearly beats the random baseline, checkpoints are found from a file, a run or
the log root, baselines need none, and bad input is one line on stderr (exit 2). Plus the rollout's counting."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TRAINED_ITERATIONS, TrainedRun, subprocess_env
from tensordict import TensorDict

from mjdist.cli.play import main
from mjdist.launch.machine import Machine
from mjdist.play import run as play_run
from mjdist.play.evaluation import PlaySummary, rollout

PLAY = Path(sys.executable).with_name("play")
TASK = "cartpole-balance"
ITERATIONS = TRAINED_ITERATIONS
FINAL = f"model_{ITERATIONS - 1}.pt"
SUMMARY_KEYS = {"task", "agent", "checkpoint", "num_envs", "steps", "episodes", "mean_reward", "std_reward",
                "mean_episode_length", "video"}  # fmt: skip
QUICK = ["--gpu-ids", "None", "--num-steps", "1"]


@pytest.fixture(scope="module")
def trained(trained_run: TrainedRun) -> tuple[Path, str]:
    """The log root of the session's trained cart-pole run, and the sha256 of its final checkpoint."""
    return trained_run.log_root, _sha256(trained_run.final_checkpoint)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_dir(log_root: Path) -> Path:
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    return run_dir


def _play_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    """Run ``play --json`` in-process; its stdout must be exactly one JSON object with the summary's keys."""
    assert main([TASK, "--json", *args]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    summary = json.loads(line)
    assert set(summary) == SUMMARY_KEYS
    return summary


@pytest.mark.slow
def test_trained_policy_outlasts_random_actions(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _run_dir(trained[0]) / FINAL
    same_way = ["--json", "--num-envs", "16", "--num-episodes", "16", "--gpu-ids", "None"]
    script = subprocess.Popen(
        [str(PLAY), TASK, "--checkpoint", str(checkpoint), *same_way],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    try:  # the random baseline plays in-process while the console script starts up
        random = _play_json(["--agent", "random", *same_way[1:]], capsys)
        stdout, stderr = script.communicate(timeout=300)
    finally:
        script.kill()
    assert script.returncode == 0, stderr
    (line,) = stdout.splitlines()  # nothing but the JSON object on stdout
    policy = json.loads(line)
    assert set(policy) == SUMMARY_KEYS
    assert policy["task"] == TASK and policy["agent"] == "policy" and policy["checkpoint"] == str(checkpoint)
    assert policy["num_envs"] == 16 and policy["episodes"] >= 16
    assert f"Loaded checkpoint {checkpoint} (iteration {ITERATIONS - 1})" in stderr
    assert random["agent"] == "random" and random["checkpoint"] is None and random["episodes"] >= 16
    assert policy["mean_episode_length"] >= 3 * random["mean_episode_length"], (policy, random)
    assert policy["mean_reward"] > random["mean_reward"]


@pytest.mark.slow
def test_run_dir_and_log_root_find_the_latest_checkpoint(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _run_dir(trained[0])
    from_run = _play_json(["--run", str(run_dir), *QUICK], capsys)
    from_log_root = _play_json(["--log-root", str(trained[0]), *QUICK], capsys)
    assert from_run["checkpoint"] == from_log_root["checkpoint"] == str(run_dir / FINAL)
    assert from_run["steps"] == 1


def test_baselines_need_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _play_json(
        ["--agent", "zero", "--log-root", str(tmp_path), "--num-envs", "4", "--num-episodes", "4", "--gpu-ids", "None"],
        capsys,
    )
    assert summary["agent"] == "zero" and summary["checkpoint"] is None
    assert summary["num_envs"] == 4 and summary["episodes"] >= 4 and summary["mean_episode_length"] > 0
    assert list(tmp_path.iterdir()) == []


def test_text_summary_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([TASK, "--agent", "random", "--num-envs", "2", "--gpu-ids", "None"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{TASK} | random | ") and " episodes over 2 envs | return " in line


def _assert_usage_error(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("play: error: ") and message in line, line


def _checkpoint_like_text(tmp_path: Path) -> Path:
    path = tmp_path / "model_1.pt"
    path.write_text("not a checkpoint\n")
    return path


def _run_without_checkpoints(tmp_path: Path) -> Path:
    run_dir = tmp_path / "cartpole_balance" / "2026-01-01_00-00-00"
    (run_dir / "params").mkdir(parents=True)
    return run_dir


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cartpole-balanse"], "unknown task 'cartpole-balanse'; known tasks: cartpole-balance, cartpole-swingup"),
        ([TASK, "--checkpoint", "{tmp}/model_7.pt"], "checkpoint {tmp}/model_7.pt does not exist"),
        ([TASK, "--checkpoint", "{text}"], "cannot read checkpoint {tmp}/model_1.pt: "),
        ([TASK, "--run", "{empty_run}"], "has no model_<iteration>.pt checkpoints"),
        ([TASK, "--run", "{tmp}/nowhere"], "run directory {tmp}/nowhere does not exist"),
        ([TASK, "--log-root", "{empty_root}"], "no run with checkpoints under {empty_root}/cartpole_balance"),
        ([TASK, "--log-root", "{empty_run_root}"], "no run with checkpoints under"),
        ([TASK, "--checkpoint", "{text}", "--run", "{empty_run}"], "give --checkpoint or --run, not both"),
        ([TASK, "--agent", "random", "--checkpoint", "{text}"], "--agent random plays without a checkpoint"),
        ([TASK, "--num-envs", "0"], "--num-envs must be at least 1, got 0"),
        ([TASK, "--env.num-envs", "0"], "--env.num-envs must be at least 1, got 0"),
        ([TASK, "--num-episodes", "0"], "--num-episodes must be at least 1, got 0"),
        ([TASK, "--num-steps", "-3"], "--num-steps must be at least 1, got -3"),
        ([TASK, "--num-episodes", "4", "--num-steps", "4"], "give --num-episodes or --num-steps, not both"),
        ([TASK, "--gpu-ids", "x"], "'x' is not a GPU id"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    places = {
        "tmp": str(tmp_path),
        "text": str(_checkpoint_like_text(tmp_path)),
        "empty_root": str(tmp_path / "empty"),
        "empty_run": str(_run_without_checkpoints(tmp_path / "root")),
        "empty_run_root": str(tmp_path / "root"),
    }
    before = sorted(tmp_path.rglob("*"))
    _assert_usage_error([arg.format(**places) for arg in args], message.format(**places), capsys)
    assert sorted(tmp_path.rglob("*")) == before


def test_several_gpus_are_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(play_run, "read_machine", lambda: Machine(None, 2, 8))
    _assert_usage_error([TASK, "--gpu-ids", "0", "1"], "play runs on one device; give one GPU id", capsys)
    _assert_usage_error([TASK, "--gpu-ids", "all"], "play runs on one device; give one GPU id", capsys)


@pytest.mark.slow
def test_truncated_foreign_and_misfitting_checkpoints_are_refused(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = _run_dir(trained[0]) / FINAL
    truncated = tmp_path / "truncated" / "model_29.pt"
    truncated.parent.mkdir()
    data = original.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _assert_usage_error([TASK, "--checkpoint", str(truncated), *QUICK], f"cannot read checkpoint {truncated}: ", capsys)

    checkpoint = torch.load(original, weights_only=True)
    checkpoint["infos"]["task"] = "cartpole-swingup"
    torch.save(checkpoint, tmp_path / "model_5.pt")
    _assert_usage_error(
        [TASK, "--checkpoint", str(tmp_path / "model_5.pt"), *QUICK],
        f"checkpoint {tmp_path / 'model_5.pt'} was trained on task 'cartpole-swingup', not '{TASK}'",
        capsys,
    )

    checkpoint["infos"]["task"] = TASK
    checkpoint["infos"]["train_cfg"]["actor"]["hidden_dims"] = [8]
    torch.save(checkpoint, tmp_path / "model_6.pt")
    _assert_usage_error(
        [TASK, "--checkpoint", str(tmp_path / "model_6.pt"), *QUICK],
        f"checkpoint {tmp_path / 'model_6.pt'} does not fit this task's networks: Error(s) in loading state_dict",
        capsys,
    )


@pytest.mark.slow
def test_play_leaves_the_checkpoint_unchanged(trained: tuple[Path, str]) -> None:
    """Runs after the tests above (file order): none of them changed a byte of the trained checkpoint."""
    log_root, digest = trained
    assert _sha256(_run_dir(log_root) / FINAL) == digest


class _FakeVecEnv:
    """Two environments whose episodes last 2 and 3 steps and earn 1 and 2 per step."""

    num_envs = 2
    device = torch.device("cpu")
    lengths = torch.tensor([2, 3])

    def __init__(self) -> None:
        self.age = torch.zeros(2, dtype=torch.long)
        self.seen: list[torch.Tensor] = []

    def get_observations(self) -> TensorDict:
        return TensorDict({"policy": self.age.float().unsqueeze(-1)}, batch_size=[2])

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        self.seen.append(actions)
        self.age += 1
        dones = (self.age == self.lengths).long()
        self.age[dones.bool()] = 0
        return self.get_observations(), torch.tensor([1.0, 2.0]), dones, {}


def _act(obs: TensorDict) -> torch.Tensor:
    """Actions that show which observations the actor saw: 10 x each environment's step count."""
    return obs["policy"] * 10


def test_rollout_counts_episodes_and_keeps_those_of_the_last_step() -> None:
    env = _FakeVecEnv()
    episodes = rollout(env, _act, num_episodes=3, num_steps=None)
    # env 0 ends at steps 2 and 4, env 1 at step 3: the third episode ends at step 4
    assert (episodes.steps, episodes.returns, episodes.lengths) == (4, [2.0, 6.0, 2.0], [2, 3, 2])
    assert [a.squeeze(-1).tolist() for a in env.seen] == [[0, 0], [10, 10], [0, 20], [10, 0]]

    both_end = rollout(_FakeVecEnv(), _act, num_episodes=4, num_steps=None)
    # at step 6 both environments finish an episode: the budget of 4 is passed, and both are kept
    assert (both_end.steps, both_end.returns, both_end.lengths) == (6, [2.0, 6.0, 2.0, 2.0, 6.0], [2, 3, 2, 2, 3])

    by_steps = rollout(_FakeVecEnv(), _act, num_episodes=None, num_steps=5)
    assert (by_steps.steps, by_steps.returns) == (5, [2.0, 6.0, 2.0])
    with pytest.raises(ValueError, match="exactly one"):
        rollout(_FakeVecEnv(), _act, num_episodes=2, num_steps=2)


def test_summary_statistics_and_formats() -> None:
    episodes = rollout(_FakeVecEnv(), _act, num_episodes=4, num_steps=None)
    summary = PlaySummary.of(episodes, TASK, "policy", "/runs/x/model_99.pt", num_envs=2)
    assert summary.mean_reward == pytest.approx(3.6) and summary.std_reward == pytest.approx(3.84**0.5)
    assert summary.mean_episode_length == pytest.approx(2.4)
    assert summary.to_text() == (
        f"{TASK} | policy model_99.pt | 5 episodes over 2 envs | return 3.60 ± 1.96 | length 2.4 steps"
    )
    assert summary.to_json() == {
        "task": TASK, "agent": "policy", "checkpoint": "/runs/x/model_99.pt", "num_envs": 2, "steps": 6,
        "episodes": 5, "mean_reward": pytest.approx(3.6), "std_reward": pytest.approx(3.84**0.5),
        "mean_episode_length": pytest.approx(2.4), "video": None,
    }  # fmt: skip

    one = PlaySummary.of(rollout(_FakeVecEnv(), _act, 1, None), TASK, "zero", None, 1)
    assert (one.episodes, one.mean_reward, one.std_reward, one.mean_episode_length) == (1, 2.0, 0.0, 2.0)
    assert one.to_text() == f"{TASK} | zero | 1 episode over 1 env | return 2.00 ± 0.00 | length 2.0 steps"

    none = PlaySummary.of(rollout(_FakeVecEnv(), _act, None, 1), TASK, "random", None, 2)
    assert json.loads(json.dumps(none.to_json()))["mean_reward"] is None and none.std_reward is None
    assert none.to_text() == f"{TASK} | random | 0 episodes over 2 envs | return n/a | length n/a"


def _play_video_command(*args: str) -> dict:
    """The real ``play`` console script (it picks the headless renderer before anything imports mujoco)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("play")), TASK, "--video", "--gpu-ids", "None", "--json", *args],
        capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_video_has_the_requested_frames_and_size(trained: tuple[Path, str], osmesa: None) -> None:
    import imageio.v3 as iio

    run_dir = _run_dir(trained[0])
    summary = _play_video_command(
        "--run", str(run_dir), "--video-length", "12", "--video-width", "96", "--video-height", "64",
        "--num-envs", "4", "--num-steps", "3",
    )  # fmt: skip
    assert summary["steps"] == 3  # the evaluation is unchanged by the recording
    assert summary["video"] == str(run_dir / "videos" / "play" / f"{Path(FINAL).stem}.mp4")
    frames = iio.imread(summary["video"])
    assert frames.shape == (12, 64, 96, 3)
    assert frames.std() > 5, "the frames show a scene, not a blank buffer"
    assert _sha256(run_dir / FINAL) == trained[1]


@pytest.mark.slow
def test_baseline_video_goes_under_the_experiment(tmp_path: Path, osmesa: None) -> None:
    import imageio.v3 as iio

    _play_video_command(
        "--agent", "zero", "--log-root", str(tmp_path), "--video-length", "4", "--video-width", "32",
        "--video-height", "32", "--num-envs", "2", "--num-steps", "1",
    )  # fmt: skip
    assert iio.imread(tmp_path / "cartpole_balance" / "videos" / "play" / "zero.mp4").shape == (4, 32, 32, 3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--video-length", "0"], "--video-length must be at least 1 frame, got 0"),
        (["--video-width", "33"], "--video-width must be an even number of pixels, at least 16, got 33"),
        (["--video-height", "8"], "--video-height must be an even number of pixels, at least 16, got 8"),
    ],
)
def test_bad_video_flags_are_refused(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _assert_usage_error([TASK, "--agent", "zero", "--log-root", str(tmp_path), "--video", *flags], message, capsys)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_video_location_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    _assert_usage_error(
        [TASK, "--agent", "zero", "--log-root", str(blocker / "runs"), "--video"], "is a file, not a directory", capsys
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
