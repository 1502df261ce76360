"""The cart-pole environment (heavy imports: torch, Warp, MuJoCo); its configs live in the package."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from mjdist_tasks.cartpole import BalanceConfig, SwingupConfig

from mjdist.envs.core import MjWarpEnv


class CartpoleEnv(MjWarpEnv):
    """Observations: cart position, cos/sin of the pole angle, cart and pole velocities."""

    model_file = Path(__file__).with_name("cartpole.xml")
    cfg: BalanceConfig | SwingupConfig

    def observations(self) -> dict[str, torch.Tensor]:
        """The same five numbers for the policy and the critic."""
        angle = self.qpos[:, 1]
        obs = torch.stack(
            (self.qpos[:, 0], torch.cos(angle), torch.sin(angle), self.qvel[:, 0], self.qvel[:, 1]), dim=-1
        )
        return {"policy": obs, "critic": obs}

    def terminations(self) -> dict[str, torch.Tensor]:
        """Cart off the track; pole past the angle limit (wrapped to [-pi, pi])."""
        angle = torch.remainder(self.qpos[:, 1] + math.pi, 2 * math.pi) - math.pi
        return {
            "cart_out_of_bounds": self.qpos[:, 0].abs() > self.cfg.cart_limit,
            "pole_fell": angle.abs() > self.cfg.pole_angle_limit,
        }

    def reward_terms(self) -> dict[str, torch.Tensor]:
        """Every term named in the task's reward weights."""
        angle = self.qpos[:, 1]
        failed = self.terminated.float()
        terms = {
            "alive": 1.0 - failed,
            "termination": failed,
            "pole_angle": (torch.remainder(angle + math.pi, 2 * math.pi) - math.pi).square(),
            "upright": (torch.cos(angle) + 1.0) / 2.0,
            "cart_position": self.qpos[:, 0].square(),
            "cart_velocity": self.qvel[:, 0].abs(),
            "pole_angular_velocity": self.qvel[:, 1].abs(),
            "pole_angular_velocity_sq": self.qvel[:, 1].square(),
            "effort": self.ctrl[:, 0].square(),
        }
        return {name: terms[name] for name in self.reward_weights}

    def initial_state(self, env_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cart near the centre, pole near initial_angle, small random velocities."""
        n, cfg = len(env_ids), self.cfg
        qpos = torch.stack(
            (
                self.uniform(-cfg.initial_position_noise, cfg.initial_position_noise, n),
                cfg.initial_angle + self.uniform(-cfg.initial_angle_noise, cfg.initial_angle_noise, n),
            ),
            dim=-1,
        )
        qvel = self.uniform(-cfg.initial_velocity_noise, cfg.initial_velocity_noise, n, 2)
        return qpos, qvel
