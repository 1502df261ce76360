"""One rank's mjlab environment: mjlab's ManagerBasedRlEnv behind mjlab's own rsl_rl wrapper, seeded by mjdist."""

from __future__ import annotations

import contextlib
import copy
import sys

import torch
from mjdist_tasks.mjlab import MjlabAgentConfig, MjlabEnvConfig
from mjlab.rl import RslRlVecEnvWrapper
from mjlab.sim.sim import Simulation

from mjdist.tasks import TaskSpec


class MjlabVecEnv(RslRlVecEnvWrapper):
    """mjlab's wrapper, with what mjdist's runner asks of a VecEnv besides rsl_rl's contract."""

    def take_diverged_count(self) -> torch.Tensor:
        """Worlds reset for diverged physics: mjlab does not detect them (it has a NaN guard that records them
        instead), so none."""
        return torch.zeros((), device=self.device)


def mjlab_vec_env(spec: TaskSpec, env: MjlabEnvConfig, agent: MjlabAgentConfig, device: str, seed: int) -> MjlabVecEnv:
    """The task's environment (its ``env_class``, mjlab's ManagerBasedRlEnv) on ``device``, with ``env.seed =
    seed`` (on a copy: the rank's config stays as it is) and actions clipped to ``agent.clip_actions``, as mjlab's
    train script does; on the CPU its physics graph-captured unless ``env.cpu_graph_capture`` is off."""
    env = copy.deepcopy(env)
    env.seed = seed
    with contextlib.redirect_stdout(sys.stderr):  # mjlab prints its managers' tables: stdout is play --json's
        manager_env = spec.load_env_class()(cfg=env, device=device)
        if env.cpu_graph_capture and not manager_env.sim.wp_device.is_cuda:
            capture_on_cpu(manager_env.sim)
        return MjlabVecEnv(manager_env, clip_actions=agent.clip_actions)


def capture_on_cpu(sim: Simulation) -> None:
    """Make mjlab's simulation replay captured Warp graphs (step, forward, reset, sensing) on the CPU: mjlab decides
    on CUDA only, and recaptures with the same switch when the model's arrays change."""
    sim.use_cuda_graph = True
    sim.create_graph()
