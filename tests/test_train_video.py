"""`train --video`: rank 0 records clips while it trains, into the run and TensorBoard, without changing what any
rank computes; the runs also leave their ONNX exports and summary.json."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import read_strict_json, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mjdist import rendering
from mjdist.cli.train import main
from mjdist.train.summary import SUMMARY_FILE, read_summary

TASK = "cartpole-balance"
TINY = ["--gpu-ids", "None", "--env.num-envs", "16", "--agent.num-steps-per-env", "8", "--agent.max-iterations", "3",
        "--agent.save-interval", "2"]  # fmt: skip
VIDEO = ["--video", "--video-interval", "2", "--video-length", "12", "--video-width", "64", "--video-height", "48"]


def train_run(log_root: Path, *args: str) -> Path:
    """Train the tiny cart-pole run with ``args``; its run directory."""
    result = run_train(TASK, *TINY, "--log-root", str(log_root), *args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, osmesa: None) -> dict[str, Path]:
    """The same tiny run with and without --video, in one process and on 2 CPU workers (with --video)."""
    root = tmp_path_factory.mktemp("train-video")
    return {
        "plain": train_run(root / "plain"),
        "video": train_run(root / "video", *VIDEO),
        "workers": train_run(root / "workers", *VIDEO, "--cpu-workers", "2"),
    }


@pytest.mark.slow
def test_clips_have_the_requested_frames_and_reach_tensorboard(runs: dict[str, Path]) -> None:
    for run in ("video", "workers"):
        clips = runs[run] / "videos" / "train"
        assert sorted(path.name for path in clips.iterdir()) == ["iter_0.mp4", "iter_2.mp4"]  # every 2nd, and the last
        for clip in clips.iterdir():
            frames = iio.imread(clip)
            assert frames.shape == (12, 48, 64, 3) and frames.std() > 5, clip

        events = EventAccumulator(str(runs[run]), size_guidance={"images": 0})
        events.Reload()
        images = events.Images("Video/train")
        assert [image.step for image in images] == [0, 2]
        gif = iio.imread(io.BytesIO(images[0].encoded_image_string), index=None, extension=".gif")
        assert gif.shape[:3] == (12, 48, 64) and (images[0].width, images[0].height) == (64, 48)
    assert not (runs["plain"] / "videos").exists()


@pytest.mark.slow
def test_recording_changes_nothing_the_ranks_compute(runs: dict[str, Path]) -> None:
    plain, video, workers = (read_summary(runs[run]) for run in ("plain", "video", "workers"))
    assert plain["parameter_digest"] == video["parameter_digest"] is not None
    assert (workers["world_size"], workers["status"]) == (2, "finished")  # rank 1 agreed with rank 0, which recorded
    assert (plain["mean_reward"], plain["mean_episode_length"]) == (video["mean_reward"], video["mean_episode_length"])


@pytest.mark.slow
def test_a_finished_run_has_its_exports_and_summary(runs: dict[str, Path]) -> None:
    run_dir = runs["plain"]
    summary = read_summary(run_dir)
    assert summary["status"] == "finished" and summary["cause"] is None and summary["iterations"] == 3
    assert summary["task"] == TASK and summary["world_size"] == 1 and summary["devices"] == ["cpu"]
    assert summary["env_steps_per_s"] > 0 and summary["mean_episode_length"] > 0 and summary["wall_time_s"] > 0
    assert summary["checkpoints"] == [str(run_dir / "model_0.pt"), str(run_dir / "model_2.pt")]
    exported = run_dir / "exported"
    assert summary["exports"] == [str(exported / name) for name in
                                  ("model_0.onnx", "model_2.onnx", "policy.onnx", "policy.pt")]  # fmt: skip
    assert (exported / "policy.onnx").read_bytes() == (exported / "model_2.onnx").read_bytes()
    assert read_strict_json(run_dir / SUMMARY_FILE) == summary


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--video-interval", "0"], "--video-interval must be at least 1 iteration, got 0"),
        (["--video-length", "0"], "--video-length must be at least 1 frame, got 0"),
        (["--video-width", "33"], "--video-width must be an even number of pixels, at least 16, got 33"),
    ],
)
def test_bad_video_flags_are_refused(
    flags: list[str], message: str, log_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([TASK, "--gpu-ids", "None", "--log-root", str(log_root), "--video", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"train: error: {message}"
    assert not log_root.exists()


def test_video_without_osmesa_is_refused(
    log_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(rendering, "find_library", lambda name: None)
    assert main([TASK, "--gpu-ids", "None", "--log-root", str(log_root), "--video"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "libOSMesa is not installed" in line and "apt-get install libosmesa6" in line
    assert not log_root.exists()


def test_clips_go_to_wandb_through_rsl_rls_writer(tmp_path: Path) -> None:
    from rsl_rl.utils.log_writer import LogWriter

    from mjdist.train.clips import log_clip

    class Uploads(LogWriter):
        def __init__(self) -> None:
            self.videos: list[tuple[Path, int]] = []

        def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None:
            """Unused."""

        def save_video(self, video: Path, it: int) -> None:
            self.videos.append((video, it))

    writer = Uploads()
    log_clip(writer, tmp_path / "iter_5.mp4", np.zeros((3, 16, 16, 3), dtype=np.uint8), 50, 5)
    assert writer.videos == [(tmp_path / "iter_5.mp4", 5)]
