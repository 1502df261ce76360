"""What acts in `play`: a trained policy restored from a checkpoint, or a baseline that needs none."""

from __future__ import annotations

from pathlib import Path

import torch

from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.play.evaluation import Actor
from mjdist.rl.runner import DistributedRunner


def load_policy(vec_env: RslRlVecEnv, path: Path, train_cfg: dict, task: str, device: str) -> Actor:
    """The deterministic policy of the checkpoint ``path``, built from the ``train_cfg`` it was trained with."""
    runner = DistributedRunner(vec_env, train_cfg, log_dir=None, device=device, task=task)
    runner.load_checkpoint(path, device)
    return runner.get_inference_policy(device)


def baseline(agent: str, vec_env: RslRlVecEnv) -> Actor:
    """``random``: uniform actions in [-action_clip, action_clip] from the env's seeded generator; else all zeros."""
    env = vec_env.env
    shape = (env.num_envs, env.num_actions)
    if agent == "random":
        clip = env.cfg.action_clip
        return lambda _obs: env.uniform(-clip, clip, *shape)
    return lambda _obs: torch.zeros(shape, device=env.device)
