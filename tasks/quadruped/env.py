"""The quadruped velocity-tracking environment (heavy imports: torch, Warp, MuJoCo); its configs live in the package."""

from __future__ import annotations

import math

import mujoco_warp as mjw
import torch
import warp as wp
from mjdist_tasks.quadruped import MODEL_FILE, VelocityFlatConfig

from mjdist.envs.config import EnvConfig
from mjdist.envs.core import MjWarpEnv

FEET = ("FR", "FL", "RR", "RL")
STAND_KEYFRAME = "stand"
SPAWN_CLEARANCE = 0.03
"""The trunk starts this much above the standing keyframe's height, so that randomized legs don't start in the floor."""
MOVING_COMMAND = 0.1
"""Commands with a smaller xy speed (m/s) count as standing still (no feet_air_time reward)."""


def quat_rotate_inverse(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Rotate world-frame vectors ``[n, 3]`` into the frames of the (w, x, y, z) quaternions ``[n, 4]``."""
    w, xyz = quat[:, :1], quat[:, 1:]
    return (
        vec * (2.0 * w.square() - 1.0)
        - torch.cross(xyz, vec, dim=-1) * (2.0 * w)
        + xyz * (2.0 * (xyz * vec).sum(dim=-1, keepdim=True))
    )


class QuadrupedEnv(MjWarpEnv):
    """Policy observations (48): base linear and angular velocity, projected gravity, command, joint positions
    (relative to the standing pose) and velocities, last action. The critic sees them without noise, plus
    friction, trunk mass offset, base height and foot contacts (55)."""

    model_file = MODEL_FILE
    per_world_model_fields = ("geom_friction", "body_mass")
    rewards_per_second = True
    cfg: VelocityFlatConfig

    def __init__(self, cfg: EnvConfig, device: str, seed: int) -> None:
        n = cfg.num_envs
        self.commands = torch.zeros(n, 3, device=device)
        self.command_timer = torch.zeros(n, device=device)
        self.feet_air_time = torch.zeros(n, len(FEET), device=device)
        self.foot_contact = torch.zeros(n, len(FEET), dtype=torch.bool, device=device)
        self.air_time_reward = torch.zeros(n, device=device)
        self.trunk_mass_offset = torch.zeros(n, device=device)
        self.friction = torch.ones(n, device=device)
        self.base_lin_vel = torch.zeros(n, 3, device=device)
        self.base_ang_vel = torch.zeros(n, 3, device=device)
        self.projected_gravity = torch.zeros(n, 3, device=device)
        self.gravity_world = torch.tensor([0.0, 0.0, -1.0], device=device).expand(n, 3)
        super().__init__(cfg, device, seed)

    def prepare_model(self) -> None:
        """Don't print a warning per step when the line search stops at ls_iterations: with exploring policies
        (random joint targets every 20 ms) it happens routinely, and the step it returns is still good. MuJoCo-Warp
        3.11 (mjlab's) has no such warning: its ``warn_overflow`` is one bool and it exports no ``OverflowType``."""
        overflow_type = getattr(mjw, "OverflowType", None)
        if overflow_type is not None:
            self.wp_model.opt.warn_overflow &= ~overflow_type.LS_ITERATIONS

    def bind_views(self) -> None:
        """The standing pose, joint limits, trunk and sensor indices from the model; the policy observations' noise
        amplitudes; views of the sensors, actuator forces, accelerations, and the per-world friction and mass that
        resets randomize."""
        model = self.mj_model
        self.default_qpos = torch.tensor(model.keyframe(STAND_KEYFRAME).qpos, dtype=torch.float32, device=self.device)
        self.default_joint_pos = self.default_qpos[7:]
        self.joint_limits = torch.tensor(model.jnt_range[1:], dtype=torch.float32, device=self.device)
        self.trunk_id = model.body("trunk").id
        self.nominal_trunk_mass = float(model.body_mass[self.trunk_id])
        self.foot_contact_columns = _consecutive_columns(
            [int(model.sensor_adr[model.sensor(f"{foot}_foot_contact").id]) for foot in FEET], "foot contact sensors"
        )
        self.trunk_contact_adr = int(model.sensor_adr[model.sensor("trunk_contact").id])
        data = self.wp_data
        noise = self.cfg.noise
        joints = self.num_actions
        amplitudes = ((noise.lin_vel, 3), (noise.ang_vel, 3), (noise.gravity, 3), (0.0, 3),
                      (noise.joint_pos, joints), (noise.joint_vel, joints), (0.0, joints))  # fmt: skip
        self.noise_amplitude = torch.cat(
            [torch.full((width,), amplitude * noise.scale, device=self.device) for amplitude, width in amplitudes]
        )
        self.sensordata = wp.to_torch(data.sensordata)
        self.actuator_force = wp.to_torch(data.actuator_force)
        self.qacc = wp.to_torch(data.qacc)
        self.geom_friction = wp.to_torch(self.wp_model.geom_friction)
        self.body_mass = wp.to_torch(self.wp_model.body_mass)

    # ---- actions and state updates ----------------------------------------------------------------------

    def apply_actions(self, actions: torch.Tensor) -> None:
        """Joint position targets around the standing pose."""
        torch.add(self.default_joint_pos, actions, alpha=self.cfg.action_scale, out=self.ctrl)

    def after_physics_step(self) -> None:
        """Base velocities in the base frame, foot contacts and air times, command timers."""
        self._update_base_state()
        contact = self.sensordata[:, self.foot_contact_columns] > 0
        touch_down = contact & (self.feet_air_time > 0)
        self.feet_air_time += self.step_dt
        moving = self.commands[:, :2].norm(dim=-1) > MOVING_COMMAND
        self.air_time_reward.copy_(((self.feet_air_time - self.cfg.air_time_target) * touch_down).sum(dim=-1) * moving)
        self.feet_air_time *= ~contact
        self.foot_contact.copy_(contact)

        self.command_timer -= self.step_dt
        expired = self.command_timer <= 0
        new_commands, new_timers = self._sample_commands(self.num_envs)
        self.commands.copy_(torch.where(expired.unsqueeze(-1), new_commands, self.commands))
        self.command_timer.copy_(torch.where(expired, new_timers, self.command_timer))

    def _update_base_state(self) -> None:  # in place: the buffers outlive torch.inference_mode() (play)
        quat = self.qpos[:, 3:7]
        self.base_lin_vel.copy_(quat_rotate_inverse(quat, self.qvel[:, :3]))  # a free joint's linear velocity is global
        self.base_ang_vel.copy_(self.qvel[:, 3:6])  # ... and its angular velocity is in the body frame
        self.projected_gravity.copy_(quat_rotate_inverse(quat, self.gravity_world))

    def _sample_commands(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        cmd = self.cfg.commands
        commands = torch.stack(
            [self.uniform(*cmd.lin_vel_x, n), self.uniform(*cmd.lin_vel_y, n), self.uniform(*cmd.ang_vel_z, n)], dim=-1
        )
        standing = self.uniform(0.0, 1.0, n) < cmd.standing_share
        return commands * ~standing.unsqueeze(-1), self.uniform(*cmd.resample_interval, n)

    # ---- what the core asks for -------------------------------------------------------------------------

    def observations(self) -> dict[str, torch.Tensor]:
        """Noisy policy observations; clean ones plus privileged physics for the critic."""
        self._update_base_state()  # worlds may have been reset since the physics step
        joint_pos = self.qpos[:, 7:] - self.default_joint_pos
        joint_vel = self.qvel[:, 6:]
        clean = (
            self.base_lin_vel,
            self.base_ang_vel,
            self.projected_gravity,
            self.commands,
            joint_pos,
            joint_vel,
            self.actions,
        )
        policy = torch.cat(clean, dim=-1)
        if self.cfg.noise.scale > 0:
            policy = policy + self.noise_amplitude * (
                2.0 * torch.rand(policy.shape, generator=self.generator, device=self.device) - 1.0
            )
        privileged = torch.cat(
            (
                self.friction.unsqueeze(-1),
                self.trunk_mass_offset.unsqueeze(-1),
                self.qpos[:, 2:3],
                self.foot_contact.float(),
            ),
            dim=-1,
        )
        return {"policy": policy, "critic": torch.cat((*clean, privileged), dim=-1)}

    def policy_observation_terms(self) -> dict[str, int]:
        """The policy terms of :meth:`observations`, in order."""
        joints = self.num_actions
        return {"base_lin_vel": 3, "base_ang_vel": 3, "projected_gravity": 3, "velocity_command": 3,
                "joint_pos": joints, "joint_vel": joints, "last_action": joints}  # fmt: skip

    def deployment_metadata(self) -> dict[str, object]:
        """Actions are joint position targets around the standing pose (target = default_joint_pos + action_scale x
        action), tracked by PD actuators with these gains; joint_pos observations are relative to the same pose."""
        model = self.mj_model
        return {
            "joint_names": [model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu)],
            "default_joint_pos": self.default_joint_pos.tolist(),
            "joint_stiffness": model.actuator_gainprm[:, 0].tolist(),
            "joint_damping": (-model.actuator_biasprm[:, 2]).tolist(),
        }

    def terminations(self) -> dict[str, torch.Tensor]:
        """Trunk touching the floor, trunk too low, trunk tilted past max_tilt."""
        return {
            "trunk_contact": self.sensordata[:, self.trunk_contact_adr] > 0,
            "too_low": self.qpos[:, 2] < self.cfg.min_base_height,
            "flipped": self.projected_gravity[:, 2] > -math.cos(self.cfg.max_tilt),
        }

    def reward_terms(self) -> dict[str, torch.Tensor]:
        """The terms whose weight is not 0 (unweighted, per second)."""
        inv_var = 1.0 / self.cfg.tracking_std**2
        terms = {
            "track_lin_vel_xy": lambda: torch.exp(
                -(self.commands[:, :2] - self.base_lin_vel[:, :2]).square().sum(dim=-1) * inv_var
            ),
            "track_ang_vel_z": lambda: torch.exp(-(self.commands[:, 2] - self.base_ang_vel[:, 2]).square() * inv_var),
            "lin_vel_z": lambda: self.base_lin_vel[:, 2].square(),
            "ang_vel_xy": lambda: self.base_ang_vel[:, :2].square().sum(dim=-1),
            "flat_orientation": lambda: self.projected_gravity[:, :2].square().sum(dim=-1),
            "joint_torques": lambda: self.actuator_force.square().sum(dim=-1),
            "joint_acc": lambda: self.qacc[:, 6:].square().sum(dim=-1),
            "action_rate": lambda: (self.actions - self.prev_actions).square().sum(dim=-1),
            "feet_air_time": lambda: self.air_time_reward,
            "termination": lambda: self.terminated.float(),
        }
        return {name: terms[name]() for name in self.reward_weights}

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Standing pose with random joint offsets and heading, slightly above the floor, random base velocity."""
        n, rand = self.num_envs, self.cfg.randomization
        qpos = self.default_qpos.repeat(n, 1)
        qpos[:, 2] += SPAWN_CLEARANCE
        yaw = self.uniform(-math.pi, math.pi, n)
        qpos[:, 3] = torch.cos(yaw / 2)
        qpos[:, 6] = torch.sin(yaw / 2)
        joints = self.default_joint_pos + self.uniform(-rand.joint_pos, rand.joint_pos, n, self.num_actions)
        qpos[:, 7:] = joints.clamp(self.joint_limits[:, 0], self.joint_limits[:, 1])
        qvel = torch.zeros(n, self.mj_model.nv, device=self.device)
        qvel[:, :6] = self.uniform(-rand.base_velocity, rand.base_velocity, n, 6)
        return qpos, qvel

    def reset_task_state(self, starting: torch.Tensor) -> None:
        """New friction, trunk mass and command where episodes start; clear their air times and contacts. Every
        world's model values are rewritten from ``friction``/``trunk_mass_offset``, unchanged where none starts."""
        n, rand, rows = self.num_envs, self.cfg.randomization, starting.unsqueeze(-1)
        torch.where(starting, self.uniform(*rand.friction, n), self.friction, out=self.friction)
        self.geom_friction[:, :, 0] = self.friction.unsqueeze(-1)
        torch.where(starting, self.uniform(*rand.trunk_mass_offset, n), self.trunk_mass_offset,
                    out=self.trunk_mass_offset)  # fmt: skip
        torch.add(self.trunk_mass_offset, self.nominal_trunk_mass, out=self.body_mass[:, self.trunk_id])
        commands, timers = self._sample_commands(n)
        torch.where(rows, commands, self.commands, out=self.commands)
        torch.where(starting, timers, self.command_timer, out=self.command_timer)
        self.feet_air_time.masked_fill_(rows, 0.0)
        self.foot_contact.masked_fill_(rows, False)


def _consecutive_columns(addresses: list[int], what: str) -> slice:
    """A slice over sensor addresses that follow each other (a view: indexing by a list copies it to the device
    every step, and waits for that)."""
    if addresses != list(range(addresses[0], addresses[0] + len(addresses))):
        raise ValueError(f"the model's {what} must be declared one after the other (sensor addresses {addresses})")
    return slice(addresses[0], addresses[0] + len(addresses))
