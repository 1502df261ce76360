"""Cart-pole tasks: ``cartpole-balance`` (start near upright, fail on a fall) and ``cartpole-swingup``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from mjdist.domains import above_zero, finite, flag_name
from mjdist.envs.config import EnvConfig
from mjdist.rl.config import AgentConfig, ModelConfig, PpoConfig
from mjdist.tasks import TaskSpec

MODEL_FILE = Path(__file__).with_name("cartpole.xml")
"""The task's MJCF model."""


@dataclass(frozen=True)
class BalanceRewards:
    """Weights of the balance reward terms (0 switches a term off)."""

    alive: float = 1.0
    """Per step while the episode goes on."""
    termination: float = -2.0
    """Once, when the pole falls or the cart leaves the track."""
    pole_angle: float = -1.0
    """Squared pole angle from upright (rad^2)."""
    cart_position: float = -0.05
    """Squared cart distance from the track centre (m^2)."""
    cart_velocity: float = -0.01
    """Absolute cart speed (m/s)."""
    pole_angular_velocity: float = -0.005
    """Absolute pole angular speed (rad/s)."""


@dataclass(frozen=True)
class SwingupRewards:
    """Weights of the swing-up reward terms (0 switches a term off)."""

    upright: float = 1.0
    """(cos(angle) + 1) / 2: 1 upright, 0 hanging down."""
    cart_position: float = -0.05
    """Squared cart distance from the track centre (m^2)."""
    pole_angular_velocity_sq: float = -0.005
    """Squared pole angular speed (rad^2/s^2)."""
    effort: float = -0.01
    """Squared actuator command."""


@dataclass(frozen=True)
class CartpoleConfig(EnvConfig):
    """Cart-pole: a motor pushes the cart along a rail (+-3 m), the pole swings freely."""

    num_envs: int = 512
    """Environments simulated by EACH rank: 2 ranks x 512 envs = 1024 environments per step."""
    initial_angle: float = 0.0
    """Pole angle at the start of an episode, before noise (0 = upright, pi = hanging down)."""
    initial_angle_noise: float = 0.15
    """Episodes start at initial_angle +- this (uniform, rad)."""
    initial_position_noise: float = 0.5
    """Cart starts at +- this from the centre (uniform, m)."""
    initial_velocity_noise: float = 0.05
    """Cart and pole start with speeds of +- this (uniform)."""
    cart_limit: float = 2.4
    """An episode fails when |cart position| exceeds this (m); inf never fails."""
    pole_angle_limit: float = 0.4
    """An episode fails when the pole leans more than this from upright (rad); inf never fails."""

    def validate(self) -> None:
        """The base checks, and the start state's and the failure bounds' domains."""
        super().validate()
        finite("--env.initial-angle", self.initial_angle)
        for name in ("initial_angle_noise", "initial_position_noise", "initial_velocity_noise"):
            finite(flag_name(f"env.{name}"), getattr(self, name), 0)
        for name in ("cart_limit", "pole_angle_limit"):
            above_zero(flag_name(f"env.{name}"), getattr(self, name))


@dataclass(frozen=True)
class BalanceConfig(CartpoleConfig):
    """Balance: the pole starts near upright; the episode fails when it falls or the cart leaves the track."""

    rewards: BalanceRewards = field(default_factory=BalanceRewards)
    """Reward weights."""


@dataclass(frozen=True)
class SwingupConfig(CartpoleConfig):
    """Swing-up: the pole starts hanging down and must be swung up and held; only time-outs end episodes."""

    initial_angle: float = math.pi
    """Pole angle at the start of an episode, before noise (0 = upright, pi = hanging down)."""
    initial_angle_noise: float = 0.1
    """Episodes start at initial_angle +- this (uniform, rad)."""
    cart_limit: float = math.inf
    """An episode fails when |cart position| exceeds this (m); inf never fails (the rail stops the cart)."""
    pole_angle_limit: float = math.inf
    """An episode fails when the pole leans more than this from upright (rad); inf never fails."""
    rewards: SwingupRewards = field(default_factory=SwingupRewards)
    """Reward weights."""


_AGENT = AgentConfig(
    max_iterations=100,
    num_steps_per_env=32,
    save_interval=25,
    init_noise_std=1.0,
    actor=ModelConfig(hidden_dims=(64, 64)),
    critic=ModelConfig(hidden_dims=(64, 64)),
    algorithm=PpoConfig(learning_rate=1e-3, entropy_coef=0.005),
)

BALANCE = TaskSpec(
    name="cartpole-balance",
    env_class="mjdist_tasks.cartpole.env:CartpoleEnv",
    env=BalanceConfig(),
    agent=dataclasses.replace(_AGENT, experiment_name="cartpole_balance"),
    play_env=BalanceConfig(num_envs=16),
    video_camera="track",
    model_file=MODEL_FILE,
)

SWINGUP = TaskSpec(
    name="cartpole-swingup",
    env_class="mjdist_tasks.cartpole.env:CartpoleEnv",
    env=SwingupConfig(),
    agent=dataclasses.replace(_AGENT, experiment_name="cartpole_swingup", max_iterations=300),
    play_env=SwingupConfig(num_envs=16),
    video_camera="track",
    model_file=MODEL_FILE,
)
