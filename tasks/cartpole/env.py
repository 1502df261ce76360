"""The cart-pole environment (heavy imports: torch, Warp, MuJoCo); its configs live in the package."""

from __future__ import annotations

import math

import torch
from mjdist_tasks.cartpole import MODEL_FILE, BalanceConfig, SwingupConfig

from mjdist.envs.core import MjWarpEnv


class CartpoleEnv(MjWarpEnv):
    """Observations: cart position, cos/sin of the pole angle, cart and pole velocities."""

    model_file = MODEL_FILE
    cfg: BalanceConfig | SwingupConfig

    def observations(self) -> dict[str, torch.Tensor]:
        """The same five numbers for the policy and the critic."""
        angle = self.pole_angle
        obs = torch.stack(
            (self.cart_position, torch.cos(angle), torch.sin(angle), self.cart_velocity, self.pole_velocity), dim=-1
        )
        return {"policy": obs, "critic": obs}

    def policy_observation_terms(self) -> dict[str, int]:
        """The five numbers of :meth:`observations`, in order."""
        return dict.fromkeys(("cart_position", "cos_pole_angle", "sin_pole_angle", "cart_velocity", "pole_velocity"), 1)

    def terminations(self) -> dict[str, torch.Tensor]:
        """Cart off the track; pole past the angle limit (wrapped to [-pi, pi], kept for the rewards)."""
        self.wrapped_angle = torch.remainder(self.pole_angle + math.pi, 2 * math.pi) - math.pi
        return {
            "cart_out_of_bounds": self.cart_position.abs() > self.cfg.cart_limit,
            "pole_fell": self.wrapped_angle.abs() > self.cfg.pole_angle_limit,
        }

    def reward_terms(self) -> dict[str, torch.Tensor]:
        """The terms whose weight is not 0; the others are not computed."""
        failed = self.terminated.float()
        terms = {
            "alive": lambda: 1.0 - failed,
            "termination": lambda: failed,
            "pole_angle": lambda: self.wrapped_angle.square(),
            "upright": lambda: (torch.cos(self.pole_angle) + 1.0) / 2.0,
            "cart_position": lambda: self.cart_position.square(),
            "cart_velocity": lambda: self.cart_velocity.abs(),
            "pole_angular_velocity": lambda: self.pole_velocity.abs(),
            "pole_angular_velocity_sq": lambda: self.pole_velocity.square(),
            "effort": lambda: self.motor_command.square(),
        }
        return {name: terms[name]() for name in self.reward_weights}

    def bind_views(self) -> None:
        """Column views of the state (taken once: slicing is a torch operation per step too), and the bounds of
        the initial (cart, pole, cart velocity, pole velocity), for one draw per reset."""
        self.cart_position, self.pole_angle = self.qpos.unbind(dim=-1)
        self.cart_velocity, self.pole_velocity = self.qvel.unbind(dim=-1)
        self.motor_command = self.ctrl[:, 0]
        cfg = self.cfg
        noises = (cfg.initial_position_noise, cfg.initial_angle_noise, *(cfg.initial_velocity_noise,) * 2)
        centre = torch.tensor((0.0, cfg.initial_angle, 0.0, 0.0), device=self.device)
        noise = torch.tensor(noises, device=self.device)
        self.initial_low, self.initial_high = centre - noise, centre + noise

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cart near the centre, pole near initial_angle, small random velocities (uniform, one draw for all four)."""
        state = self.uniform(self.initial_low, self.initial_high, self.num_envs, 4)
        return state[:, :2], state[:, 2:]
