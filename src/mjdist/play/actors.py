"""What acts in `play`: a trained policy restored from a checkpoint, or a baseline that needs none."""

from __future__ import annotations

import contextlib
import copy
import io
import logging

import torch
from rsl_rl.utils import resolve_callable, resolve_obs_groups

from mjdist.checkpoints import Checkpoint, CheckpointError
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.play.evaluation import Actor

log = logging.getLogger(__name__)


def load_policy(vec_env: RslRlVecEnv, checkpoint: Checkpoint, device: str) -> Actor:
    """The deterministic policy of ``checkpoint``, built as rsl_rl builds it from the train_cfg it was trained with
    (no training runner: no critic, optimizer or rollout storage) and loaded from the state already read."""
    train_cfg = copy.deepcopy(checkpoint.train_cfg)
    if train_cfg is None:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not record the train_cfg that built its networks")
    observations = vec_env.get_observations()
    with contextlib.redirect_stdout(io.StringIO()) as printed:  # rsl_rl prints the groups it resolved
        obs_groups = resolve_obs_groups(observations, train_cfg["obs_groups"], ["actor", "critic"])
    log.debug("%s", printed.getvalue().strip())
    actor_cfg = train_cfg["actor"]  # a copy: rsl_rl 5.4 has no resolve_class, which pops class_name from one
    actor_class = resolve_callable(actor_cfg.pop("class_name"))
    policy = actor_class(observations, obs_groups, "actor", vec_env.num_actions, **actor_cfg).to(device)
    try:
        policy.load_state_dict(checkpoint.state["actor_state_dict"])
    except RuntimeError as error:  # missing keys or shapes that differ
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise CheckpointError(
            f"checkpoint {checkpoint.path} does not fit this task's networks: {' '.join(lines[:2])}"
        ) from error
    return policy.eval()


def baseline(agent: str, vec_env: RslRlVecEnv) -> Actor:
    """``random``: uniform actions in [-action_clip, action_clip] from the env's seeded generator; else all zeros."""
    env = vec_env.env
    shape = (env.num_envs, env.num_actions)
    if agent == "random":
        clip = env.cfg.action_clip
        return lambda _obs: env.uniform(-clip, clip, *shape)
    return lambda _obs: torch.zeros(shape, device=env.device)
