"""`train --video`: rank 0 records clips of the current policy while it trains.

Each clip plays the policy (deterministic actions) in a recording environment of its own: one world, built from
the training configuration, reseeded and reset before every clip so that clips of different iterations start
alike. It shares nothing with the training environments (state, random generator, Warp graph) and only reads the
policy, so recording changes nothing that the ranks compute. A clip goes to
``<run dir>/videos/train/iter_<it>.mp4``, to TensorBoard as an animated image (``Video/train``: TensorBoard's
own ``add_video`` needs moviepy 1.x) and to wandb through rsl_rl's writer.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from rsl_rl.utils.log_writer import LogWriter
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.play.video import VideoSpec, rendered_frames, write_mp4
from mjdist.rl.runner import DistributedRunner
from mjdist.tasks import TaskSpec

TENSORBOARD_TAG = "Video/train"
VIDEO_DIR = Path("videos") / "train"
"""Where the clips go, relative to the run directory."""

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipSchedule:
    """Which iterations get a clip: 0, every ``interval`` after it, and the last one."""

    interval: int
    last_iteration: int

    def due(self, iteration: int) -> bool:
        """Whether the policy after ``iteration`` is recorded."""
        return iteration % self.interval == 0 or iteration == self.last_iteration


class TrainingClips:
    """Rank 0's clips: call it with each completed iteration (a runner iteration hook)."""

    def __init__(
        self, runner: DistributedRunner, spec: TaskSpec, schedule: ClipSchedule, frames: VideoSpec, seed: int
    ) -> None:
        train_env = runner.env.env  # type: ignore[attr-defined]
        recording_cfg = dataclasses.replace(train_env.cfg, num_envs=1)
        self.vec_env = RslRlVecEnv(spec.load_env_class()(recording_cfg, device=str(train_env.device), seed=seed))
        self.runner = runner
        self.schedule = schedule
        self.frames = frames
        """Length, size and camera of every clip (its path is chosen per clip)."""
        self.seed = seed
        self.fps = round(1.0 / self.vec_env.env.step_dt)

    def __call__(self, iteration: int) -> None:
        if not self.schedule.due(iteration):
            return
        started = time.perf_counter()
        env = self.vec_env.env
        env.generator.manual_seed(self.seed)
        env.reset()
        policy = self.runner.alg.get_policy()
        frames = np.stack(list(rendered_frames(self.vec_env, policy, self.frames)))
        path = Path(self.runner.logger.log_dir) / VIDEO_DIR / f"iter_{iteration}.mp4"
        write_mp4(path, frames, self.fps)
        log_clip(self.runner.logger.writer, path, frames, self.fps, iteration)
        log.info("Wrote %s (%d frames) in %.1f s", path, len(frames), time.perf_counter() - started)


def log_clip(writer: object, path: Path, frames: np.ndarray, fps: int, iteration: int) -> None:
    """Log a clip to TensorBoard (an animated GIF, as ``add_video`` writes it) and, through rsl_rl's
    ``save_video``, to wandb; with ``--agent.logger none`` the writer discards it."""
    if isinstance(writer, SummaryWriter):
        writer._get_file_writer().add_summary(gif_summary(TENSORBOARD_TAG, frames, fps), global_step=iteration)
    if isinstance(writer, LogWriter):
        writer.save_video(path, iteration)


def gif_summary(tag: str, frames: np.ndarray, fps: int) -> Summary:
    """A TensorBoard image summary holding ``frames`` (``[time, height, width, 3]`` uint8) as an animated GIF."""
    gif = io.BytesIO()
    iio.imwrite(gif, frames, extension=".gif", duration=1000 / fps, loop=0)
    _, height, width, channels = frames.shape
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=gif.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
