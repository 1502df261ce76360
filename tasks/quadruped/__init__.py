"""Quadruped velocity tracking on flat ground: ``velocity-flat-quadruped`` (a Go1-class robot, 12 PD joints)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from mjdist.domains import above_zero, finite, finite_range, flag_name, positive_finite
from mjdist.envs.config import EnvConfig
from mjdist.rl.config import AgentConfig, ModelConfig, PpoConfig
from mjdist.tasks import TaskSpec

MODEL_FILE = Path(__file__).with_name("quadruped.xml")
"""The task's MJCF model."""


@dataclass(frozen=True)
class VelocityRewards:
    """Weights per second of simulated time: each control step adds weight x term x control dt (0: term off)."""

    track_lin_vel_xy: float = 1.0
    """exp(-|commanded - actual base xy velocity|^2 / tracking_std^2), in the base frame."""
    track_ang_vel_z: float = 0.5
    """exp(-(commanded - actual yaw rate)^2 / tracking_std^2)."""
    lin_vel_z: float = -2.0
    """Squared vertical base velocity (m^2/s^2)."""
    ang_vel_xy: float = -0.05
    """Squared roll and pitch rates (rad^2/s^2)."""
    flat_orientation: float = -1.0
    """Squared x and y components of gravity in the base frame (0 when the trunk is level)."""
    joint_torques: float = -2e-4
    """Sum of squared actuator torques (N^2 m^2)."""
    joint_acc: float = -2.5e-7
    """Sum of squared joint accelerations (rad^2/s^4)."""
    action_rate: float = -0.01
    """Sum of squared changes of the action between control steps."""
    feet_air_time: float = 1.0
    """On each touch-down, the foot's air time minus air_time_target (s); only while a motion is commanded."""
    termination: float = -100.0
    """1 on the step the episode fails (trunk contact, too low, flipped); weight x dt is the penalty."""


@dataclass(frozen=True)
class VelocityCommands:
    """Commanded base velocities (base frame), resampled per environment on a random timer."""

    lin_vel_x: tuple[float, float] = (-1.0, 1.0)
    """Forward velocity range (m/s), uniform."""
    lin_vel_y: tuple[float, float] = (-0.5, 0.5)
    """Lateral velocity range (m/s), uniform."""
    ang_vel_z: tuple[float, float] = (-1.0, 1.0)
    """Yaw rate range (rad/s), uniform."""
    standing_share: float = 0.1
    """Share of commands that are 'stand still' (all zero)."""
    resample_interval: tuple[float, float] = (4.0, 8.0)
    """Seconds until an environment's next command, uniform."""


@dataclass(frozen=True)
class ObservationNoise:
    """Uniform noise added to the policy's observations (the critic sees them clean)."""

    scale: float = 1.0
    """Multiplies every amplitude below; 0 turns observation noise off."""
    lin_vel: float = 0.1
    """Base linear velocity (m/s)."""
    ang_vel: float = 0.2
    """Base angular velocity (rad/s)."""
    gravity: float = 0.05
    """Projected gravity (unit vector)."""
    joint_pos: float = 0.01
    """Joint positions (rad)."""
    joint_vel: float = 1.5
    """Joint velocities (rad/s)."""


@dataclass(frozen=True)
class DomainRandomization:
    """Per-environment physics and start-state randomization, drawn at every reset."""

    friction: tuple[float, float] = (0.4, 1.25)
    """Sliding friction of the feet and the floor, uniform."""
    trunk_mass_offset: tuple[float, float] = (-1.0, 2.0)
    """Added to the trunk's 5.2 kg (kg), uniform: payloads and model error."""
    joint_pos: float = 0.2
    """Initial joint positions: default pose +- this (rad, uniform, within the joint limits)."""
    base_velocity: float = 0.5
    """Initial base linear (m/s) and angular (rad/s) velocity components: +- this, uniform."""


@dataclass(frozen=True)
class VelocityFlatConfig(EnvConfig):
    """Quadruped (Go1-class, 12.6 kg, 12 PD position-controlled joints) tracking commanded forward, lateral and
    yaw velocities on flat ground; actions are joint targets around the standing pose."""

    num_envs: int = 4096
    """Environments simulated by EACH rank (4096 suits a GPU; on CPU use 256-1024 per worker)."""
    episode_length: int = 1000
    """Episode length in control steps (1000 x 0.02 s = 20 s); reaching it is a time-out."""
    decimation: int = 4
    """Physics steps (0.005 s) per control step: control at 50 Hz."""
    action_scale: float = 0.25
    """Joint target = standing pose + action_scale x clipped action (rad)."""
    action_clip: float = 100.0
    """Bound applied to raw policy actions before scaling."""
    nconmax: int | None = 16
    """Contacts allocated per world (4 feet + the trunk's box on the floor need at most 8)."""
    njmax: int | None = 96
    """Constraint rows allocated per world (contacts x 4 pyramid edges + joint limits)."""
    tracking_std: float = 0.5
    """Width of the exponential velocity tracking rewards (m/s, rad/s)."""
    air_time_target: float = 0.25
    """Air time per step the feet_air_time term aims at (s)."""
    min_base_height: float = 0.15
    """The episode fails when the trunk's centre drops below this (m); standing height is about 0.28."""
    max_tilt: float = 1.0
    """The episode fails when the trunk tilts more than this from upright (rad): flipped."""
    rewards: VelocityRewards = field(default_factory=VelocityRewards)
    """Reward weights."""
    commands: VelocityCommands = field(default_factory=VelocityCommands)
    """Velocity commands."""
    noise: ObservationNoise = field(default_factory=ObservationNoise)
    """Observation noise."""
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    """Domain randomization."""

    def validate(self) -> None:
        """The base checks, and the domains of the task's own settings."""
        super().validate()
        positive_finite("--env.tracking-std", self.tracking_std)
        finite("--env.air-time-target", self.air_time_target, 0)
        finite("--env.min-base-height", self.min_base_height)
        above_zero("--env.max-tilt", self.max_tilt)
        commands = self.commands
        for name in ("lin_vel_x", "lin_vel_y", "ang_vel_z"):
            finite_range(flag_name(f"env.commands.{name}"), getattr(commands, name))
        if not 0 <= commands.standing_share <= 1:
            raise ValueError(f"--env.commands.standing-share must be between 0 and 1, got {commands.standing_share}")
        finite_range("--env.commands.resample-interval", commands.resample_interval, 1e-9)
        for name in ("scale", "lin_vel", "ang_vel", "gravity", "joint_pos", "joint_vel"):
            finite(flag_name(f"env.noise.{name}"), getattr(self.noise, name), 0)
        finite_range("--env.randomization.friction", self.randomization.friction, 1e-9)
        finite_range("--env.randomization.trunk-mass-offset", self.randomization.trunk_mass_offset)
        for name in ("joint_pos", "base_velocity"):
            finite(flag_name(f"env.randomization.{name}"), getattr(self.randomization, name), 0)


VELOCITY_FLAT = TaskSpec(
    name="velocity-flat-quadruped",
    env_class="mjdist_tasks.quadruped.env:QuadrupedEnv",
    env=VelocityFlatConfig(),
    agent=AgentConfig(
        experiment_name="velocity_flat_quadruped",
        max_iterations=1500,
        num_steps_per_env=24,
        save_interval=50,
        init_noise_std=1.0,
        actor=ModelConfig(hidden_dims=(512, 256, 128)),
        critic=ModelConfig(hidden_dims=(512, 256, 128)),
        algorithm=PpoConfig(learning_rate=1e-3, entropy_coef=0.01),
    ),
    play_env=VelocityFlatConfig(
        num_envs=16,
        commands=VelocityCommands(lin_vel_x=(0.5, 1.0), lin_vel_y=(0.0, 0.0), ang_vel_z=(0.0, 0.0), standing_share=0.0),
        noise=ObservationNoise(scale=0.0),
        randomization=dataclasses.replace(DomainRandomization(), friction=(1.0, 1.0), trunk_mass_offset=(0.0, 0.0)),
    ),
    video_camera="track",
    model_file=MODEL_FILE,
)
