"""The batched MuJoCo-Warp env core and its rsl_rl ``VecEnv`` adapter, on cart-pole (CPU, 16 worlds).

Physics is checked against CPU MuJoCo run world by world from the same state, so a test fails if Warp does
not see what is written into the torch views, or if a world is reset (or not) when it should not be.
"""

from __future__ import annotations

import dataclasses
import math

import mujoco
import numpy as np
import pytest
import torch
import warp as wp
from mjdist_tasks.cartpole import BalanceRewards
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from mjdist.envs.core import MjWarpEnv
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.tasks import registered_tasks

N = 16
BALANCE = "cartpole-balance"
SWINGUP = "cartpole-swingup"


def make_env(task: str, seed: int = 0, **overrides) -> MjWarpEnv:
    spec = registered_tasks()[task]
    cfg = dataclasses.replace(spec.env, **{"num_envs": N, **overrides})
    return spec.load_env_class()(cfg, device="cpu", seed=seed)


@pytest.fixture(scope="module")
def balance_env() -> MjWarpEnv:
    return make_env(BALANCE)


@pytest.fixture
def balance(balance_env: MjWarpEnv) -> MjWarpEnv:
    """The shared graph-captured balance env, every world at the start of a fresh episode."""
    balance_env.reset()
    return balance_env


@pytest.fixture(scope="module")
def custom() -> MjWarpEnv:
    """Balance, uncaptured, half the actuator command, and only the alive/termination rewards (3 and -7)."""
    rewards = BalanceRewards(
        alive=3.0, termination=-7.0, pole_angle=0.0, cart_position=0.0, cart_velocity=0.0, pole_angular_velocity=0.0
    )
    return make_env(BALANCE, graph_capture=False, action_scale=0.5, rewards=rewards)


@pytest.fixture
def swingup() -> MjWarpEnv:
    return make_env(SWINGUP)


def expected_obs(env: MjWarpEnv) -> torch.Tensor:
    """Cart position, cos/sin of the pole angle, cart and pole velocities, of the env's current state."""
    angle = env.qpos[:, 1]
    return torch.stack((env.qpos[:, 0], angle.cos(), angle.sin(), env.qvel[:, 0], env.qvel[:, 1]), dim=-1)


def mujoco_steps(
    env: MjWarpEnv, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference physics: CPU MuJoCo runs ``decimation`` steps from each world's state, one world at a time."""
    model = env.mj_model
    data = mujoco.MjData(model)
    next_qpos, next_qvel = [], []
    for q, v, c in zip(qpos.double().numpy(), qvel.double().numpy(), ctrl.double().numpy(), strict=True):
        mujoco.mj_resetData(model, data)
        data.qpos[:], data.qvel[:], data.ctrl[:] = q, v, c
        for _ in range(env.cfg.decimation):
            mujoco.mj_step(model, data)
        next_qpos.append(data.qpos.copy())
        next_qvel.append(data.qvel.copy())
    return torch.from_numpy(np.stack(next_qpos)).float(), torch.from_numpy(np.stack(next_qvel)).float()


def assert_within(values: torch.Tensor, low: float, high: float) -> None:
    assert ((values >= low) & (values <= high)).all(), f"{values} not within [{low}, {high}]"


def assert_fresh_episode_states(env: MjWarpEnv, ids: torch.Tensor) -> None:
    """The worlds ``ids`` hold states drawn from the task's initial-state distribution."""
    cfg = env.cfg
    assert_within(env.qpos[ids, 0], -cfg.initial_position_noise, cfg.initial_position_noise)
    angle, noise = cfg.initial_angle, cfg.initial_angle_noise
    assert_within(env.qpos[ids, 1], angle - noise, angle + noise)
    assert_within(env.qvel[ids], -cfg.initial_velocity_noise, cfg.initial_velocity_noise)


def mask(*ids: int) -> torch.Tensor:
    flags = torch.zeros(N, dtype=torch.bool)
    flags[list(ids)] = True
    return flags


def assert_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


# ---- the rsl_rl VecEnv contract ---------------------------------------------------------------------------


def assert_observation_groups(obs: TensorDict) -> None:
    assert isinstance(obs, TensorDict)
    assert obs.batch_size == torch.Size([N])
    assert set(obs.keys()) == {"policy", "critic"}
    for group in ("policy", "critic"):
        assert obs[group].shape == (N, 5) and obs[group].dtype == torch.float32
        assert obs[group].device == torch.device("cpu")


def test_adapter_fulfils_the_rsl_rl_vec_env_contract(balance: MjWarpEnv) -> None:
    venv = RslRlVecEnv(balance)
    assert isinstance(venv, VecEnv)
    assert (venv.num_envs, venv.num_actions, venv.max_episode_length) == (N, 1, 500)
    assert venv.device == torch.device("cpu") and venv.cfg is balance.cfg

    buf = venv.episode_length_buf
    assert buf is balance.episode_length_buf and buf.shape == (N,)
    assert not buf.dtype.is_floating_point and buf.dtype != torch.bool
    # OnPolicyRunner assigns the attribute (init_at_random_ep_len); the core env must see the new lengths.
    lengths = torch.arange(N) * 7 + 1
    venv.episode_length_buf = lengths
    assert balance.episode_length_buf is buf, "the core keeps (and keeps counting in) its own buffer"
    assert_equal(balance.episode_length_buf, lengths)

    assert_observation_groups(venv.get_observations())
    balance.qpos[3, 1] = 1.0  # this world's pole has fallen
    obs, rewards, dones, extras = venv.step(torch.zeros(N, 1))

    assert_observation_groups(obs)
    torch.testing.assert_close(obs["policy"], expected_obs(balance))
    assert_equal(obs["critic"], obs["policy"])
    assert_equal(venv.get_observations()["policy"], obs["policy"])
    assert rewards.shape == (N,) and rewards.dtype == torch.float32
    assert dones.shape == (N,) and not dones.dtype.is_floating_point
    assert_equal(dones.long(), mask(3).long())
    assert_equal(balance.episode_length_buf, torch.where(mask(3), 0, lengths + 1))

    assert extras["time_outs"].dtype == torch.bool and extras["time_outs"].shape == (N,)
    assert not extras["time_outs"].any()
    log = extras["log"]
    assert isinstance(log, dict) and log
    for key, value in log.items():
        assert isinstance(key, str) and "/" in key, key
        assert isinstance(value, torch.Tensor | float)
        assert torch.as_tensor(value).numel() == 1

    _, _, dones, extras = venv.step(torch.zeros(N, 1))
    assert not dones.any() and set(extras["log"]) == set(log)
    assert all(value.isnan() for value in extras["log"].values()), "no episode ended: NaN, which the logger skips"


# ---- the core: views, resets, time-outs, actions, rewards, seeding ----------------------------------------


def test_state_tensors_are_zero_copy_views_of_what_warp_steps(balance: MjWarpEnv) -> None:
    for name in ("qpos", "qvel", "ctrl"):
        assert getattr(balance, name).data_ptr() == getattr(balance.wp_data, name).ptr, name
    qpos = torch.stack((torch.linspace(-2.0, 2.0, N), torch.linspace(-0.3, 0.3, N)), dim=-1)
    qvel = torch.stack((torch.linspace(1.0, -1.0, N), torch.linspace(-2.0, 2.0, N)), dim=-1)
    ctrl = torch.linspace(-1.0, 1.0, N).unsqueeze(-1)  # never 0: every world is pushed
    balance.qpos.copy_(qpos)
    balance.qvel.copy_(qvel)
    balance.ctrl.copy_(ctrl)
    assert_equal(torch.from_numpy(balance.wp_data.qpos.numpy()), qpos)

    balance.simulate()

    ref_qpos, ref_qvel = mujoco_steps(balance, qpos, qvel, ctrl)
    torch.testing.assert_close(balance.qpos, ref_qpos, rtol=0, atol=1e-5)
    torch.testing.assert_close(balance.qvel, ref_qvel, rtol=0, atol=1e-5)
    _, unpushed_qvel = mujoco_steps(balance, qpos, qvel, torch.zeros_like(ctrl))
    assert (ref_qvel[:, 0] - unpushed_qvel[:, 0]).abs().min() > 1e-3, "the written ctrl matters in every world"
    assert (balance.qpos[:, 0] - qpos[:, 0]).abs().min() > 1e-3, "and so do the written velocities"


def test_only_done_worlds_are_reset_the_others_continue_their_physics(balance: MjWarpEnv) -> None:
    venv = RslRlVecEnv(balance)
    balance.qpos[1, 1] = 0.7  # pole fallen
    balance.qpos[6, 1] = -0.9  # pole fallen the other way
    balance.qpos[11, 1] = 2.5  # pole far down
    balance.qpos[13, 0] = 2.6  # cart off the track (limit 2.4)
    balance.qpos[4, 1] = 2 * math.pi + 0.05  # upright after wrapping: healthy
    lengths = torch.arange(N) + 10
    venv.episode_length_buf = lengths
    done = mask(1, 6, 11, 13)
    qpos, qvel = balance.qpos.clone(), balance.qvel.clone()
    actions = torch.full((N, 1), 0.5)

    obs, _, dones, extras = venv.step(actions)

    assert_equal(dones.bool(), done)
    assert not extras["time_outs"].any()
    assert_equal(balance.episode_length_buf, torch.where(done, 0, lengths + 1))
    # Done worlds start over from freshly sampled states, with no command or action left over.
    assert_fresh_episode_states(balance, done)
    assert not torch.isclose(balance.qpos[done], qpos[done]).any()
    assert_equal(balance.ctrl[done], torch.zeros(4, 1))
    assert_equal(balance.actions[done], torch.zeros(4, 1))
    assert_equal(wp.to_torch(balance.wp_data.time)[done], torch.zeros(4))
    # The others continued from where they were, exactly as MuJoCo steps them.
    ref_qpos, ref_qvel = mujoco_steps(balance, qpos[~done], qvel[~done], actions[~done])
    torch.testing.assert_close(balance.qpos[~done], ref_qpos, rtol=0, atol=1e-5)
    torch.testing.assert_close(balance.qvel[~done], ref_qvel, rtol=0, atol=1e-5)
    assert_equal(balance.ctrl[~done], actions[~done])
    assert (wp.to_torch(balance.wp_data.time)[~done] > 0).all()
    # Observations describe the state after the resets.
    torch.testing.assert_close(obs["policy"], expected_obs(balance))


def test_time_outs_are_told_apart_from_terminations(balance: MjWarpEnv) -> None:
    venv = RslRlVecEnv(balance)
    timed_out, fallen = mask(0, 2, 4, 6), mask(8, 9)
    lengths = torch.where(timed_out, venv.max_episode_length - 1, 10)
    venv.episode_length_buf = lengths
    balance.qpos[8, 1], balance.qpos[9, 1] = 0.7, -0.7

    _, _, dones, extras = venv.step(torch.zeros(N, 1))

    assert_equal(dones.long(), (timed_out | fallen).long())
    assert_equal(extras["time_outs"], timed_out)
    assert_equal(balance.episode_length_buf, torch.where(timed_out | fallen, 0, lengths + 1))
    log = extras["log"]
    assert set(log) >= {"Episode_Termination/time_out", "Episode_Termination/pole_fell"}
    # fractions of the 6 episodes that just ended
    torch.testing.assert_close(log["Episode_Termination/time_out"], torch.tensor(4 / 6))
    torch.testing.assert_close(log["Episode_Termination/pole_fell"], torch.tensor(2 / 6))
    torch.testing.assert_close(log["Episode_Termination/cart_out_of_bounds"], torch.tensor(0.0))
    # one-step episodes: alive 1 for the 4 time-outs, the termination penalty for the 2 falls
    torch.testing.assert_close(log["Episode_Reward/alive"], torch.tensor(4 / 6))
    torch.testing.assert_close(log["Episode_Reward/termination"], torch.tensor(-2.0 * 2 / 6))


def test_diverged_worlds_are_reset_and_counted_the_others_continue(balance: MjWarpEnv) -> None:
    venv = RslRlVecEnv(balance)
    balance.qvel[:2] = float("nan")  # physics blown up
    balance.qvel[2, 1] = 2 * balance.cfg.max_abs_qvel  # finite, but beyond the sane bound
    balance.qpos[3, 0] = float("inf")
    before = balance.qpos[4:].clone()
    obs, rewards, dones, extras = venv.step(torch.zeros(N, 1))
    assert_equal(dones.bool(), mask(0, 1, 2, 3))
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(obs["critic"]).all()
    assert torch.isfinite(rewards).all()
    assert not extras["time_outs"].any()
    torch.testing.assert_close(extras["log"]["Episode_Termination/diverged"], torch.tensor(1.0))
    assert torch.isfinite(torch.stack(list(extras["log"].values()))).all()
    assert balance.take_diverged_count().item() == 4
    assert balance.take_diverged_count().item() == 0  # taking it starts the count again
    assert (balance.qpos[4:] != before).any()  # the other worlds stepped on
    for _ in range(3):  # the reset worlds simulate normally again
        obs, _, dones, _ = venv.step(torch.zeros(N, 1))
        assert torch.isfinite(obs["policy"]).all()
    assert balance.take_diverged_count().item() == 0


def test_actions_are_clipped_then_scaled(balance: MjWarpEnv, custom: MjWarpEnv) -> None:
    actions = torch.tensor([10.0, 1.0, -10.0, -1.0, 0.5, -0.25, 3.0, -0.75] * 2).unsqueeze(-1)
    clipped = actions.clamp(-1.0, 1.0)
    assert (balance.cfg.action_clip, balance.cfg.action_scale) == (1.0, 1.0)
    custom.reset()
    for env in (balance, custom):
        env.qpos.zero_()  # identical states, upright and at rest
        env.qvel.zero_()
        env.step(actions)
        assert_equal(env.actions, clipped)
    assert_equal(balance.ctrl, clipped)
    assert_equal(custom.ctrl, clipped * 0.5)
    assert custom.ctrl.abs().max() == 0.5

    # The clipped command is what drives the cart: +10 moves it exactly like +1.
    assert_equal(balance.qvel[0], balance.qvel[1])
    assert_equal(balance.qvel[2], balance.qvel[3])
    assert balance.qvel[0, 0] > 0.1 and balance.qvel[2, 0] < -0.1
    # Scaled by 0.5, a full action pushes like a half action does unscaled.
    torch.testing.assert_close(custom.qvel[0], balance.qvel[4], rtol=0, atol=1e-6)


def test_reward_terms_on_a_set_state(balance: MjWarpEnv) -> None:
    assert balance.reward_weights == dataclasses.asdict(BalanceRewards())
    x = torch.linspace(-3.0, 3.0, N)
    angle = torch.linspace(-1.0, 1.0, N) + 2 * math.pi  # wrapped before squaring
    xd, thd = torch.linspace(-2.0, 1.0, N), torch.linspace(3.0, -3.0, N)
    balance.qpos.copy_(torch.stack((x, angle), dim=-1))
    balance.qvel.copy_(torch.stack((xd, thd), dim=-1))
    balance.terminated = torch.stack(tuple(balance.terminations().values())).any(dim=0)  # as step() does first

    terms = balance.reward_terms()

    assert set(terms) == {field.name for field in dataclasses.fields(BalanceRewards)}
    wrapped = angle - 2 * math.pi
    failed = ((x.abs() > 2.4) | (wrapped.abs() > 0.4)).float()
    assert 0 < failed.sum() < N
    expected = {
        "alive": 1.0 - failed,
        "termination": failed,
        "pole_angle": wrapped.square(),
        "cart_position": x.square(),
        "cart_velocity": xd.abs(),
        "pole_angular_velocity": thd.abs(),
    }
    for name, values in expected.items():
        torch.testing.assert_close(terms[name], values, rtol=1e-5, atol=1e-5, msg=name)


def test_step_reward_is_the_weighted_sum_and_episode_sums_are_logged(
    balance: MjWarpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = RslRlVecEnv(balance)
    recorded: list[dict[str, torch.Tensor]] = []
    reward_terms = balance.reward_terms

    def recording_reward_terms() -> dict[str, torch.Tensor]:
        terms = reward_terms()
        recorded.append({name: value.clone() for name, value in terms.items()})
        return terms

    monkeypatch.setattr(balance, "reward_terms", recording_reward_terms)
    weights = balance.reward_weights
    generator = torch.Generator().manual_seed(0)
    steps = 5
    for _ in range(steps):
        _, rewards, dones, _ = venv.step(torch.rand(N, 1, generator=generator) - 0.5)
        assert not dones.any()
        weighted = sum(weight * recorded[-1][name] for name, weight in weights.items())
        torch.testing.assert_close(rewards, weighted)
        for name, value in reward_terms().items():  # nothing was reset: the terms of the state left behind
            assert_equal(value, recorded[-1][name])
    assert (recorded[-1]["pole_angle"] > 0).all() and (recorded[-1]["alive"] == 1).all()

    balance.qpos[:, 1] = 1.0  # every pole falls: all episodes end and are logged
    _, rewards, dones, extras = venv.step(torch.zeros(N, 1))
    assert dones.all()
    sums = {name: sum(weight * terms[name] for terms in recorded) for name, weight in weights.items()}
    assert set(extras["log"]) == {f"Episode_Reward/{name}" for name in weights} | {
        "Episode_Termination/cart_out_of_bounds",
        "Episode_Termination/pole_fell",
        "Episode_Termination/diverged",
        "Episode_Termination/time_out",
    }
    for name, total in sums.items():
        torch.testing.assert_close(extras["log"][f"Episode_Reward/{name}"], total.mean(), msg=name)
    torch.testing.assert_close(extras["log"]["Episode_Reward/alive"], torch.tensor(float(steps)))
    torch.testing.assert_close(extras["log"]["Episode_Reward/termination"], torch.tensor(-2.0))
    torch.testing.assert_close(rewards, -2.0 + sum(weights[n] * recorded[-1][n] for n in weights if n != "termination"))

    # The sums restart with the new episodes: a one-step episode that falls logs only its own step.
    recorded.clear()
    balance.qpos[0, 1] = 1.0
    _, _, dones, extras = venv.step(torch.zeros(N, 1))
    assert_equal(dones.bool(), mask(0))
    torch.testing.assert_close(extras["log"]["Episode_Reward/alive"], torch.tensor(0.0))
    torch.testing.assert_close(extras["log"]["Episode_Reward/termination"], torch.tensor(-2.0))
    torch.testing.assert_close(extras["log"]["Episode_Reward/pole_angle"], -recorded[0]["pole_angle"][0])


def test_reward_weights_come_from_the_config(custom: MjWarpEnv) -> None:
    assert custom.reward_weights["alive"] == 3.0 and custom.reward_weights["termination"] == -7.0
    custom.reset()
    custom.qpos[2, 1] = 1.0
    _, rewards, terminated, _, extras = custom.step(torch.zeros(N, 1))
    assert_equal(terminated, mask(2))
    assert_equal(rewards, torch.where(mask(2), -7.0, 3.0))
    # Terms switched off (weight 0) are neither computed nor logged.
    assert set(custom.reward_terms()) == {"alive", "termination"}
    assert {key for key in extras["log"] if key.startswith("Episode_Reward/")} == {
        "Episode_Reward/alive",
        "Episode_Reward/termination",
    }


def test_same_seed_same_initial_states_other_seed_different() -> None:
    first, again, other = (make_env(BALANCE, seed=seed, graph_capture=False) for seed in (0, 0, 1))
    assert_equal(again.qpos, first.qpos)
    assert_equal(again.qvel, first.qvel)
    assert_equal(again.obs["policy"], first.obs["policy"])
    assert not torch.isclose(other.qpos, first.qpos).any()
    assert not torch.isclose(other.qvel, first.qvel).any()
    for env in (first, other):
        assert_fresh_episode_states(env, torch.arange(N))
        assert env.qpos[:, 0].std() > 0.1, "every world draws its own state"
    # later resets keep drawing from the seeded generator
    initial = first.qpos.clone()
    first.reset()
    again.reset()
    assert_equal(again.qpos, first.qpos)
    assert not torch.isclose(first.qpos, initial).any()


@pytest.mark.parametrize("task", [BALANCE, SWINGUP])
def test_graph_replay_matches_eager_physics_exactly(task: str) -> None:
    captured, eager = make_env(task), make_env(task, graph_capture=False)
    assert captured._graph is not None and eager._graph is None
    assert_equal(captured.qpos, eager.qpos)
    if task == BALANCE:  # some poles past the limit, some episodes about to time out: resets between replays
        qpos = torch.stack((torch.linspace(-2.0, 2.0, N), torch.linspace(-0.6, 0.6, N)), dim=-1)
        qvel = torch.zeros(N, 2)
    else:  # carts rammed into both ends of the rail: joint-limit constraints in the solver
        x = torch.linspace(-2.95, 2.95, N)
        qpos = torch.stack((x, torch.linspace(-3.0, 3.0, N)), dim=-1)
        qvel = torch.stack((3.0 * x.sign(), torch.linspace(-5.0, 5.0, N)), dim=-1)
    lengths = torch.where(torch.arange(N) % 4 == 0, captured.max_episode_length - 5, 0)
    for env in (captured, eager):
        env.qpos.copy_(qpos)
        env.qvel.copy_(qvel)
        env.episode_length_buf.copy_(lengths)

    generator = torch.Generator().manual_seed(0)
    resets, max_cart = 0, 0.0
    for _ in range(20):
        actions = 3.0 * torch.rand(N, 1, generator=generator) - 1.5
        obs, reward, terminated, time_outs, extras = captured.step(actions)
        eager_obs, eager_reward, eager_terminated, eager_time_outs, eager_extras = eager.step(actions)
        assert_equal(captured.qpos, eager.qpos)
        assert_equal(captured.qvel, eager.qvel)
        assert_equal(captured.ctrl, eager.ctrl)
        assert_equal(obs["policy"], eager_obs["policy"])
        assert_equal(reward, eager_reward)
        assert_equal(terminated, eager_terminated)
        assert_equal(time_outs, eager_time_outs)
        assert_equal(captured.episode_length_buf, eager.episode_length_buf)
        assert extras["log"].keys() == eager_extras["log"].keys()
        resets += int((terminated | time_outs).sum())
        max_cart = max(max_cart, captured.qpos[:, 0].abs().max().item())
    assert resets >= 4, "episodes ended (and were reset) during the comparison"
    if task == SWINGUP:
        assert max_cart > 3.0, "the carts pressed into the rail's limits"


# ---- swing-up ---------------------------------------------------------------------------------------------


def test_swingup_starts_hanging_down(swingup: MjWarpEnv) -> None:
    cfg = swingup.cfg
    assert cfg.initial_angle == math.pi and cfg.pole_angle_limit == math.inf and cfg.cart_limit == math.inf
    assert swingup.max_episode_length == 500
    assert_within(swingup.qpos[:, 1], math.pi - cfg.initial_angle_noise, math.pi + cfg.initial_angle_noise)
    assert_within(swingup.obs["policy"][:, 1], -1.0, -0.99)  # cos(angle): hanging
    assert (swingup.reward_terms()["upright"] < 0.01).all()


def test_swingup_ends_episodes_only_by_time_out(swingup: MjWarpEnv) -> None:
    venv = RslRlVecEnv(swingup)
    swingup.reset()
    x = torch.linspace(-2.9, 2.9, N)
    swingup.qpos.copy_(torch.stack((x, torch.linspace(-3.0, 3.0, N)), dim=-1))  # far from upright
    swingup.qvel.copy_(torch.stack((2.0 * x.sign(), torch.linspace(-6.0, 6.0, N)), dim=-1))
    push = x.sign().unsqueeze(-1)  # towards the nearer end of the rail
    steps, leaning = 15, 0
    for _ in range(steps):
        _, _, dones, extras = venv.step(push)
        assert not dones.any() and not extras["time_outs"].any()
        assert all(value.isnan() for value in extras["log"].values())  # no episode ended
        wrapped = torch.remainder(swingup.qpos[:, 1] + math.pi, 2 * math.pi) - math.pi
        leaning += int((wrapped.abs() > 0.4).sum())
        assert (swingup.qpos[:, 0].abs() > 2.4).sum() >= N // 4
    assert leaning > N * steps // 2
    assert_equal(swingup.episode_length_buf, torch.full((N,), steps))

    timed_out = torch.arange(N) < 4
    venv.episode_length_buf = torch.where(timed_out, venv.max_episode_length - 1, steps)
    _, _, dones, extras = venv.step(push)
    assert_equal(dones.bool(), timed_out)
    assert_equal(extras["time_outs"], timed_out)
    assert extras["log"]["Episode_Termination/time_out"] == 1.0
    assert extras["log"]["Episode_Termination/pole_fell"] == 0.0
    assert extras["log"]["Episode_Termination/cart_out_of_bounds"] == 0.0
    assert {key for key in extras["log"] if key.startswith("Episode_Reward/")} == {
        "Episode_Reward/upright",
        "Episode_Reward/cart_position",
        "Episode_Reward/pole_angular_velocity_sq",
        "Episode_Reward/effort",
    }
    assert_fresh_episode_states(swingup, timed_out)
