"""PPO configuration as frozen dataclasses, turned into the train_cfg dict that rsl_rl 5.5 expects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from mjdist.domains import at_least, check_fields, finite, flag_name, path_component, positive_finite

ACTIVATIONS = ("elu", "selu", "relu", "crelu", "lrelu", "tanh", "sigmoid", "softplus", "gelu", "swish", "mish",
               "identity")  # fmt: skip
"""The activation names rsl_rl's MLP accepts (``rsl_rl.utils.resolve_nn_activation``, case-insensitive)."""
SEED_MAX = 2**32 - 1
"""The largest seed every generator takes (NumPy's is 32 bits); rank r is seeded with seed + r."""

WANDB_FORBIDDEN = "/\\#?%:"
"""Characters wandb does not allow in a project name."""
INIT_NOISE_STD = (1e-4, 1e4)
"""The initial policy noise a float32 Gaussian's log-probabilities stay finite with (1/std^2 and log std)."""

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
        path_component("--agent.experiment-name", self.experiment_name)
        if not self.experiment_name:
            raise ValueError("--agent.experiment-name must not be empty: it names the directory runs go to")
        at_least("--agent.max-iterations", self.max_iterations, 0)
        for name in ("num_steps_per_env", "save_interval"):
            at_least(flag_name(f"agent.{name}"), getattr(self, name), 1)
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"--agent.seed must be between 0 and {SEED_MAX}, got {self.seed}")
        project = self.wandb_project
        if not (project.strip() and len(project) <= 128 and not set(project) & set(WANDB_FORBIDDEN)):
            raise ValueError(f"--agent.wandb-project must be a wandb project name (1 to 128 characters, none of "
                             f"{' '.join(WANDB_FORBIDDEN)}), got {project!r}")  # fmt: skip
        if not INIT_NOISE_STD[0] <= self.init_noise_std <= INIT_NOISE_STD[1]:
            low, high = INIT_NOISE_STD
            raise ValueError(f"--agent.init-noise-std must be between {low:g} and {high:g}, got {self.init_noise_std}")
        for name in ("actor", "critic"):
            _check_model(f"agent.{name}", getattr(self, name))
        _check_ppo(self.algorithm)
        check_fields(self, "agent")

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


def _check_model(prefix: str, model: ModelConfig) -> None:
    flag = flag_name(f"{prefix}.hidden_dims")
    if not model.hidden_dims:
        raise ValueError(f"{flag} needs at least one layer size, e.g. {flag} 64 64")
    for size in model.hidden_dims:
        at_least(flag, size, 1)
    if model.activation.lower() not in ACTIVATIONS:
        raise ValueError(f"{flag_name(prefix + '.activation')} must be one of {', '.join(ACTIVATIONS)}, "
                         f"got {model.activation!r}")  # fmt: skip


def _check_ppo(ppo: PpoConfig) -> None:
    for name in ("num_learning_epochs", "num_mini_batches"):
        at_least(flag_name(f"agent.algorithm.{name}"), getattr(ppo, name), 1)
    for name in ("learning_rate", "clip_param", "max_grad_norm", "desired_kl"):
        positive_finite(flag_name(f"agent.algorithm.{name}"), getattr(ppo, name))
    for name in ("gamma", "lam"):
        value = getattr(ppo, name)
        if not 0 <= value <= 1:
            raise ValueError(f"--agent.algorithm.{name} must be between 0 and 1, got {value}")
    finite("--agent.algorithm.value-loss-coef", ppo.value_loss_coef, 0)
    finite("--agent.algorithm.entropy-coef", ppo.entropy_coef)


def _model_kwargs(model: ModelConfig) -> dict:
    return {**dataclasses.asdict(model), "hidden_dims": list(model.hidden_dims)}


def _logger_cfg(agent: AgentConfig) -> str | dict:
    if agent.logger == "wandb":
        return {"class_name": "WandbLogWriter", "project_name": agent.wandb_project}
    if agent.logger == "none":
        return {"class_name": "mjdist.rl.null_writer:NullLogWriter"}
    return "tensorboard"
