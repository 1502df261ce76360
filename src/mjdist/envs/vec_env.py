"""rsl_rl 5.5 ``VecEnv`` adapter around :class:`~mjdist.envs.core.MjWarpEnv`."""

from __future__ import annotations

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from mjdist.envs.config import EnvConfig
from mjdist.envs.core import MjWarpEnv
from mjdist.tasks import TaskSpec


class RslRlVecEnv(VecEnv):
    """Exposes an :class:`MjWarpEnv` through rsl_rl's VecEnv contract (TensorDict observations, time-outs)."""

    def __init__(self, env: MjWarpEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = env.num_actions
        self.max_episode_length = env.max_episode_length
        self.device = env.device
        self.cfg = env.cfg

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """Current episode lengths (rsl_rl may overwrite them to spread episode ends)."""
        return self.env.episode_length_buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.episode_length_buf.copy_(value)

    def get_observations(self) -> TensorDict:
        """Observations of the current state, grouped (``policy``, ``critic``)."""
        return self._as_tensordict(self.env.obs)

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """Step all worlds; ``dones`` covers terminations and time-outs, ``extras["time_outs"]`` the latter."""
        obs, reward, terminated, time_outs, extras = self.env.step(actions)
        dones = (terminated | time_outs).long()
        return self._as_tensordict(obs), reward, dones, extras

    def take_diverged_count(self) -> torch.Tensor:
        """Worlds reset for diverged physics since the last call (see :meth:`MjWarpEnv.take_diverged_count`)."""
        return self.env.take_diverged_count()

    def _as_tensordict(self, obs: dict[str, torch.Tensor]) -> TensorDict:
        return TensorDict(obs, batch_size=[self.num_envs], device=self.device)


def mjdist_vec_env(spec: TaskSpec, env: EnvConfig, agent: object, device: str, seed: int) -> RslRlVecEnv:
    """The VecEnv of an mjdist task (its TaskSpec's ``vec_env``): its environment class behind the adapter; the
    agent config plays no part (mjdist's envs clip and scale actions themselves)."""
    return RslRlVecEnv(spec.load_env_class()(env, device=device, seed=seed))
