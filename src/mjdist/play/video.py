"""Headless mp4 of world 0 of an environment: MuJoCo's renderer on a CPU copy of the Warp state.

MuJoCo picks its OpenGL backend from MUJOCO_GL when it is imported: EGL on GPU machines, OSMesa on CPU
machines (Debian: libosmesa6). The play command sets a default before anything imports mujoco.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import mujoco
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
    """Step every world with ``actor`` for ``video.length`` control steps, rendering world 0 after each."""
    env = vec_env.env
    model = env.mj_model
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, video.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, video.height)
    data = mujoco.MjData(model)
    video.path.parent.mkdir(parents=True, exist_ok=True)
    fps = round(1.0 / env.step_dt)
    with (
        mujoco.Renderer(model, height=video.height, width=video.width) as renderer,
        imageio.get_writer(video.path, fps=fps, codec="libx264", macro_block_size=1) as writer,
        torch.inference_mode(),
    ):
        obs = vec_env.get_observations()
        for _ in range(video.length):
            obs = vec_env.step(actor(obs))[0]
            data.qpos[:] = env.qpos[0].cpu().numpy()
            data.qvel[:] = env.qvel[0].cpu().numpy()
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=video.camera if video.camera is not None else -1)
            writer.append_data(renderer.render())
    log.info("Wrote %s (%d frames, %dx%d, %d fps)", video.path, video.length, video.width, video.height, fps)
