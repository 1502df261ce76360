"""mjlab's tasks as mjdist tasks: the task's env and agent configs from mjlab's registry, under mjlab's own config
classes (so that mjlab's flags work as mjlab spells them: ``--env.scene.num-envs``, ``--agent.max-iterations``),
extended with what mjdist's run asks of a config."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mjlab.envs import ManagerBasedRlEnvCfg
from mjlab.rl import RslRlOnPolicyRunnerCfg
from mjlab.tasks.registry import load_env_cfg, load_rl_cfg
from mjlab.tasks.tracking.mdp import MotionCommandCfg

from mjdist.rl.config import PPO_CLASS_NAME
from mjdist.tasks import TaskSpec

CONFIG_KEYS_NOT_FOR_RSL_RL = ("resume", "load_run", "load_checkpoint", "clip_actions", "wandb_tags", "upload_model")
"""mjlab's runner options that mjlab's own train script reads, not rsl_rl (mjdist has --resume)."""

ConfigT = TypeVar("ConfigT")


@dataclass
class MjlabEnvConfig(ManagerBasedRlEnvCfg):
    """An mjlab task's environment config (mjlab's ManagerBasedRlEnvCfg), checked by mjdist before a run."""

    cpu_graph_capture: bool = True
    """Replay the physics as captured Warp graphs on the CPU too (mjlab captures them only on CUDA GPUs): the same
    trajectories, several times faster. mjdist's addition to mjlab's config."""

    @property
    def num_envs(self) -> int:
        """Environments simulated by each rank (``scene.num_envs``)."""
        return self.scene.num_envs

    def with_num_envs(self, num_envs: int) -> MjlabEnvConfig:
        """A copy with ``num_envs`` environments (``scene.num_envs``; `play --num-envs`)."""
        config = copy.deepcopy(self)
        config.scene.num_envs = num_envs
        return config

    def validate(self) -> None:
        """Raise ValueError (one line, naming the flag) for settings that cannot work."""
        if self.scene.num_envs < 1:
            raise ValueError(f"--env.scene.num-envs must be at least 1, got {self.scene.num_envs}")
        if self.decimation < 1:
            raise ValueError(f"--env.decimation must be at least 1, got {self.decimation}")
        if not 0 < self.episode_length_s < math.inf:
            raise ValueError(f"--env.episode-length-s must be a positive finite number, got {self.episode_length_s}")
        motion = self.commands.get("motion")
        if isinstance(motion, MotionCommandCfg) and not Path(motion.motion_file).is_file():
            raise ValueError(
                f"--env.commands.motion.motion-file must name a motion .npz file for a tracking task, got "
                f"{motion.motion_file!r} (mjdist does not download motions from a W&B registry)"
            )


@dataclass
class MjlabAgentConfig(RslRlOnPolicyRunnerCfg):
    """An mjlab task's PPO config (mjlab's RslRlOnPolicyRunnerCfg), turned into rsl_rl's train_cfg by mjdist."""

    def validate(self) -> None:
        """Raise ValueError (one line, naming the flag) for settings that cannot work."""
        if self.max_iterations < 0:
            raise ValueError(f"--agent.max-iterations must be 0 or more, got {self.max_iterations}")
        for name in ("num_steps_per_env", "save_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--agent.{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.algorithm.num_mini_batches < 1 or self.algorithm.num_learning_epochs < 1:
            raise ValueError("--agent.algorithm.num-mini-batches and num-learning-epochs must be at least 1")
        if not 0 < self.algorithm.learning_rate < math.inf:
            raise ValueError(
                f"--agent.algorithm.learning-rate must be a positive finite number, got {self.algorithm.learning_rate}"
            )
        if self.resume:
            raise ValueError("--agent.resume is mjlab's; mjdist resumes with --resume CHECKPOINT|RUN_DIR|auto")

    def to_rsl_rl(self, run_name: str) -> dict:
        """rsl_rl's train_cfg, as mjlab's train script makes it, with mjdist's PPO (its ``class_name`` seam) and
        rsl_rl's per-step NaN check off (mjdist checks once per iteration)."""
        cfg = {key: value for key, value in dataclasses.asdict(self).items() if key not in CONFIG_KEYS_NOT_FOR_RSL_RL}
        for model in ("actor", "critic"):  # what mjlab's runner strips: MLPModel takes no None-valued options
            for option in ("cnn_cfg", "distribution_cfg"):
                if cfg[model].get(option) is None:
                    cfg[model].pop(option, None)
            if cfg[model].get("rnn_type") is None:
                for option in ("rnn_type", "rnn_hidden_dim", "rnn_num_layers"):
                    cfg[model].pop(option)
        cfg["obs_groups"] = {group: list(names) for group, names in self.obs_groups.items()}
        cfg["algorithm"]["class_name"] = PPO_CLASS_NAME
        cfg["algorithm"]["rnd_cfg"] = None  # rsl_rl 5.4's runner and logger read the key
        cfg["check_for_nan"] = False
        cfg["run_name"] = run_name or self.run_name
        if self.logger == "wandb":
            cfg["logger"] = {"class_name": "WandbLogWriter", "project_name": self.wandb_project}
        return cfg


def retype(config: Any, config_class: type[ConfigT]) -> ConfigT:
    """``config``'s fields (the same objects) under ``config_class``, a subclass of its class."""
    values = {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.init}
    return config_class(**values)


def mjlab_task_spec(task_id: str) -> TaskSpec:
    """The mjdist task of mjlab's registry entry ``task_id``."""
    env = retype(load_env_cfg(task_id), MjlabEnvConfig)
    agent = retype(load_rl_cfg(task_id), MjlabAgentConfig)
    agent.logger = "tensorboard"  # mjdist's default (mjlab's is wandb, which needs an account): --agent.logger wandb
    return TaskSpec(
        name=task_id,
        env_class="mjlab.envs:ManagerBasedRlEnv",
        env=env,
        agent=agent,
        play_env=retype(load_env_cfg(task_id, play=True), MjlabEnvConfig),
        vec_env="mjdist_tasks.mjlab.env:mjlab_vec_env",
        runner_class="mjdist_tasks.mjlab.runner:MjlabRunner",
        refused_flags=(
            (
                "--video",
                "mjlab's tasks render through mjlab's own viewers and video wrapper, which mjdist does not drive",
            ),
            ("--agent random", "the baselines need an mjdist task's action bounds; play a checkpoint"),
            ("--agent zero", "the baselines need an mjdist task's action bounds; play a checkpoint"),
        ),
    )
