"""Headless mp4 of world 0 of an environment: MuJoCo's renderer on a CPU copy of the Warp state.

MuJoCo picks its OpenGL backend from MUJOCO_GL when it is imported; :mod:`mjdist.rendering` chooses one that works
(EGL on a GPU when it can render there, else OSMesa) before anything imports mujoco.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import mujoco
import numpy as np
import torch

from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.play.evaluation import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSpec:
    """What to record."""

    path: Path
    length: int
    """Frames, one per control step."""
    width: int
    height: int
    camera: str | None
    """MJCF camera name; None for MuJoCo's default free camera."""


def record_video(vec_env: RslRlVecEnv, actor: Actor, video: VideoSpec) -> None:
    """Step every world with ``actor`` for ``video.length`` control steps, rendering world 0 after each, into an mp4."""
    write_mp4(video.path, rendered_frames(vec_env, actor, video), round(1.0 / vec_env.env.step_dt))
    log.info("Wrote %s (%d frames, %dx%d)", video.path, video.length, video.width, video.height)


def rendered_frames(vec_env: RslRlVecEnv, actor: Actor, video: VideoSpec) -> Iterator[np.ndarray]:
    """World 0 after each of ``video.length`` control steps of every world with ``actor``: ``[height, width, 3]``
    RGB frames, rendered by MuJoCo from a CPU copy of the world's state."""
    env = vec_env.env
    model = env.mj_model
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, video.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, video.height)
    data = mujoco.MjData(model)
    with mujoco.Renderer(model, height=video.height, width=video.width) as renderer, torch.inference_mode():
        obs = vec_env.get_observations()
        for _ in range(video.length):
            obs = vec_env.step(actor(obs))[0]
            data.qpos[:] = env.qpos[0].cpu().numpy()
            data.qvel[:] = env.qvel[0].cpu().numpy()
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=video.camera if video.camera is not None else -1)
            yield renderer.render()


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int) -> None:
    """Encode ``frames`` as an H.264 mp4 at ``fps`` frames per second, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
