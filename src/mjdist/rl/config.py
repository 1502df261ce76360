"""PPO configuration as frozen dataclasses, turned into the train_cfg dict that rsl_rl 5.5 expects."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

PPO_CLASS_NAME = "mjdist.rl.ppo:DistributedPPO"
"""The algorithm rsl_rl builds (``train_cfg["algorithm"]["class_name"]``): its PPO, extended through that seam."""


@dataclass(frozen=True)
class ModelConfig:
    """An MLP actor or critic."""

    hidden_dims: tuple[int, ...] = (256, 256, 256)
    """Sizes of the hidden layers."""
    activation: str = "elu"
    """Activation function (any name rsl_rl's MLP accepts: elu, relu, tanh, ...)."""
    obs_normalization: bool = True
    """Normalize inputs with running statistics (shared across ranks in distributed training)."""


@dataclass(frozen=True)
class PpoConfig:
    """rsl_rl PPO hyper-parameters."""

    num_learning_epochs: int = 5
    """Passes over the rollout per iteration."""
    num_mini_batches: int = 4
    """Mini-batches per epoch (gradients are averaged across ranks after each one)."""
    clip_param: float = 0.2
    """PPO ratio clipping."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """GAE lambda."""
    value_loss_coef: float = 1.0
    """Weight of the value loss."""
    entropy_coef: float = 0.005
    """Weight of the entropy bonus."""
    learning_rate: float = 1e-3
    """Initial learning rate."""
    max_grad_norm: float = 1.0
    """Gradient norm clipping."""
    schedule: Literal["adaptive", "fixed"] = "adaptive"
    """Learning-rate schedule: 'adaptive' follows the KL divergence towards desired_kl."""
    desired_kl: float = 0.01
    """Target KL divergence of the adaptive schedule."""
    use_clipped_value_loss: bool = True
    """Clip the value function update like the policy update."""


@dataclass(frozen=True)
class AgentConfig:
    """How PPO trains: rollout size, iterations, networks, logging."""

    experiment_name: str = "mjdist"
    """Runs go to <log-root>/<experiment-name>/<timestamp>[_<run-name>]/."""
    max_iterations: int = 300
    """PPO iterations to run (each collects num_steps_per_env x num_envs steps per rank); with --resume, the
    iterations to run in addition to the checkpoint's."""
    num_steps_per_env: int = 24
    """Control steps each environment collects per iteration."""
    seed: int = 42
    """Base seed; rank r uses seed + r, so ranks explore differently."""
    save_interval: int = 50
    """Save model_<it>.pt every this many iterations (and always at the end)."""
    logger: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """Where metrics go (rank 0 only). wandb honours WANDB_MODE=offline."""
    wandb_project: str = "mjdist"
    """wandb project, when --agent.logger wandb."""
    init_noise_std: float = 1.0
    """Initial standard deviation of the Gaussian policy."""
    actor: ModelConfig = field(default_factory=ModelConfig)
    """Policy network."""
    critic: ModelConfig = field(default_factory=ModelConfig)
    """Value network."""
    algorithm: PpoConfig = field(default_factory=PpoConfig)
    """PPO hyper-parameters."""

    def validate(self) -> None:
        """Raise ValueError (one line, naming the flag) for settings that cannot work."""
        if self.max_iterations < 0:
            raise ValueError(f"--agent.max-iterations must be 0 or more, got {self.max_iterations}")
        for name in ("num_steps_per_env", "save_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--agent.{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.algorithm.num_mini_batches < 1 or self.algorithm.num_learning_epochs < 1:
            raise ValueError("--agent.algorithm.num-mini-batches and num-learning-epochs must be at least 1")
        if not 0 < self.init_noise_std < math.inf:
            raise ValueError(f"--agent.init-noise-std must be a positive finite number, got {self.init_noise_std}")
        for name in ("learning_rate", "clip_param", "max_grad_norm", "desired_kl"):
            value = getattr(self.algorithm, name)
            if not 0 < value < math.inf:
                flag = f"--agent.algorithm.{name.replace('_', '-')}"
                raise ValueError(f"{flag} must be a positive finite number, got {value}")
        for name in ("gamma", "lam"):
            value = getattr(self.algorithm, name)
            if not 0 <= value <= 1:
                raise ValueError(f"--agent.algorithm.{name} must be between 0 and 1, got {value}")

    def to_rsl_rl(self, run_name: str) -> dict:
        """The ``train_cfg`` dict for ``rsl_rl.runners.OnPolicyRunner``."""
        return {
            "num_steps_per_env": self.num_steps_per_env,
            "save_interval": self.save_interval,
            "check_for_nan": False,  # a host sync per step on GPUs; mjdist checks once per iteration (rl/health)
            "run_name": run_name,
            "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
            "actor": {
                "class_name": "MLPModel",
                **_model_kwargs(self.actor),
                "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": self.init_noise_std},
            },
            "critic": {"class_name": "MLPModel", **_model_kwargs(self.critic)},
            # rnd_cfg: rsl_rl 5.4's runner and logger read the key (5.5 reads it with .get)
            "algorithm": {"class_name": PPO_CLASS_NAME, "rnd_cfg": None, **dataclasses.asdict(self.algorithm)},
            "logger": _logger_cfg(self),
        }


def _model_kwargs(model: ModelConfig) -> dict:
    return {**dataclasses.asdict(model), "hidden_dims": list(model.hidden_dims)}


def _logger_cfg(agent: AgentConfig) -> str | dict:
    if agent.logger == "wandb":
        return {"class_name": "WandbLogWriter", "project_name": agent.wandb_project}
    if agent.logger == "none":
        return {"class_name": "mjdist.rl.null_writer:NullLogWriter"}
    return "tensorboard"
