"""The velocity-flat-quadruped task on the CPU: model, standing stability, reward signs, commands, randomization,
and short real trainings through ``train`` (one process and 2 CPU workers) plus a ``play`` video."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch
from conftest import REPO, every_rank_agreed, run_train, subprocess_env
from mjdist_tasks.quadruped import DomainRandomization, ObservationNoise, VelocityCommands, VelocityRewards
from mjdist_tasks.quadruped.env import QuadrupedEnv, quat_rotate_inverse

from mjdist.tasks import registered_tasks

TASK = "velocity-flat-quadruped"
N = 16
STILL = DomainRandomization(friction=(1.0, 1.0), trunk_mass_offset=(0.0, 0.0), joint_pos=0.0, base_velocity=0.0)


def make_env(**overrides) -> QuadrupedEnv:
    spec = registered_tasks()[TASK]
    cfg = dataclasses.replace(spec.env, **{"num_envs": N, **overrides})
    return spec.load_env_class()(cfg, device="cpu", seed=0)


@pytest.fixture(scope="module")
def env() -> QuadrupedEnv:
    return make_env()


@pytest.fixture
def fresh(env: QuadrupedEnv) -> QuadrupedEnv:
    env.reset()
    return env


def test_model_is_a_go1_class_quadruped() -> None:
    model = mujoco.MjModel.from_xml_path(str(QuadrupedEnv.model_file))
    assert (model.nu, model.nq, model.nv) == (12, 19, 18)
    assert 11.0 < model.body_subtreemass[model.body("trunk").id] < 14.0
    assert all(model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)  # position (PD) actuators
    assert np.all(model.actuator_forcelimited) and np.all(np.abs(model.actuator_forcerange) <= 35.55)
    assert np.all(model.jnt_limited[1:])
    assert model.opt.timestep == 0.005


def test_standing_with_zero_action_is_stable_for_a_whole_episode() -> None:
    env = make_env(randomization=STILL, noise=ObservationNoise(scale=0.0))
    heights, failures, time_outs = [], 0, 0
    for _ in range(env.max_episode_length):
        _, reward, terminated, time_out, _ = env.step(torch.zeros(N, 12))
        heights.append(env.qpos[:, 2].clone())
        assert torch.isfinite(reward).all()
        failures += int(terminated.sum())
        time_outs += int(time_out.sum())
    assert failures == 0 and time_outs == N  # every episode runs its full 20 s
    height = torch.stack(heights[50:-1])  # after the 3 cm drop onto the feet, before the time-out reset
    assert torch.isfinite(env.qpos).all()
    assert height.min() > 0.25 and height.max() < 0.32, (height.min(), height.max())


def test_quat_rotate_inverse_matches_mujoco() -> None:
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(8, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    vecs = rng.normal(size=(8, 3))
    expected = np.empty_like(vecs)
    for i in range(8):
        conjugate = np.empty(4)
        mujoco.mju_negQuat(conjugate, quats[i])
        mujoco.mju_rotVecQuat(expected[i], vecs[i], conjugate)
    ours = quat_rotate_inverse(torch.tensor(quats, dtype=torch.float32), torch.tensor(vecs, dtype=torch.float32))
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_every_reward_term_is_finite_with_random_actions(fresh: QuadrupedEnv) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        _, reward, _, _, _ = fresh.step(torch.randn(N, 12, generator=generator))
        terms = fresh.reward_terms()
        assert set(terms) == set(dataclasses.asdict(VelocityRewards()))
        for name, term in terms.items():
            assert torch.isfinite(term).all(), name
            assert (term >= 0).all() or name == "feet_air_time", name
        assert torch.isfinite(reward).all()


def test_reward_weights_have_the_signs_of_rewards_and_penalties() -> None:
    weights = dataclasses.asdict(VelocityRewards())
    assert weights.pop("track_lin_vel_xy") > 0 and weights.pop("track_ang_vel_z") > 0
    assert weights.pop("feet_air_time") > 0
    assert all(weight < 0 for weight in weights.values()), weights


def test_tracking_is_highest_when_the_base_moves_as_commanded(fresh: QuadrupedEnv) -> None:
    """Worlds with a turned heading and different velocities: tracking is 1 only where body-frame velocity = command."""
    yaw = torch.linspace(-math.pi, math.pi, N)
    fresh.qpos[:, 3] = torch.cos(yaw / 2)
    fresh.qpos[:, 4:6] = 0.0
    fresh.qpos[:, 6] = torch.sin(yaw / 2)
    command = torch.tensor([0.8, -0.3, 0.5])
    fresh.commands[:] = command
    offsets = torch.linspace(0.0, 1.5, N)
    body_velocity = torch.stack((0.8 + offsets, -0.3 + 0 * offsets, 0 * offsets), dim=-1)
    fresh.qvel[:, :3] = torch.stack(  # the free joint's linear velocity is in the world frame
        (
            torch.cos(yaw) * body_velocity[:, 0] - torch.sin(yaw) * body_velocity[:, 1],
            torch.sin(yaw) * body_velocity[:, 0] + torch.cos(yaw) * body_velocity[:, 1],
            body_velocity[:, 2],
        ),
        dim=-1,
    )
    fresh.qvel[:, 3:6] = torch.stack((0 * offsets, 0 * offsets, 0.5 + offsets), dim=-1)
    fresh.after_physics_step()
    terms = fresh.reward_terms()
    for name in ("track_lin_vel_xy", "track_ang_vel_z"):
        assert terms[name][0] == pytest.approx(1.0, abs=1e-5), name
        assert torch.all(terms[name][1:] < terms[name][:-1]), name  # falls as the error grows
    assert terms["lin_vel_z"].abs().max() < 1e-8
    assert terms["flat_orientation"].abs().max() < 1e-8  # level trunks, whatever the heading


def test_feet_touch_the_floor_and_the_trunk_does_not_when_standing() -> None:
    env = make_env(randomization=STILL)
    for _ in range(25):
        env.step(torch.zeros(N, 12))
    assert env.foot_contact.all()
    assert not any(flags.any() for flags in env.terminations().values())


def test_a_trunk_on_the_floor_upside_down_terminates(fresh: QuadrupedEnv) -> None:
    fresh.qpos[:, 2] = 0.05  # the box is 0.057 m high: resting on the floor
    fresh.qpos[:, 3:7] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # rolled by pi
    fresh.qvel.zero_()
    _, _, terminated, time_outs, extras = fresh.step(torch.zeros(N, 12))
    assert terminated.all() and not time_outs.any()
    reasons = {name: float(value) for name, value in extras["log"].items() if name.startswith("Episode_Termination/")}
    assert reasons["Episode_Termination/flipped"] == 1.0
    assert reasons["Episode_Termination/trunk_contact"] == 1.0
    assert "Episode_Reward/termination" in extras["log"] and extras["log"]["Episode_Reward/termination"] < 0
    assert (fresh.episode_length_buf == 0).all()  # reset right away


def test_commands_are_resampled_per_env_on_their_timers() -> None:
    commands = VelocityCommands(
        lin_vel_x=(-1.0, 1.0), lin_vel_y=(0.2, 0.4), ang_vel_z=(-0.5, 0.5), standing_share=0.25,
        resample_interval=(0.1, 0.3),
    )  # fmt: skip
    env = make_env(num_envs=256, commands=commands, randomization=STILL)
    seen = []
    for _ in range(20):
        env.step(torch.zeros(256, 12))
        seen.append(env.commands.clone())
    history = torch.stack(seen)  # [steps, envs, 3]
    changed = (history[1:] != history[:-1]).any(dim=-1)
    assert changed.any(dim=0).float().mean() > 0.9  # every env got new commands within 0.4 s
    assert changed.float().mean() < 0.5  # ... but not every step
    moving = history[history.abs().sum(dim=-1) > 0]
    assert moving[:, 1].min() >= 0.2 and moving[:, 1].max() <= 0.4
    standing = (history.abs().sum(dim=-1) == 0).float().mean()
    assert 0.15 < standing < 0.35, standing


def test_friction_and_trunk_mass_are_randomized_per_world(fresh: QuadrupedEnv) -> None:
    low, high = DomainRandomization().friction
    friction = fresh.geom_friction[:, :, 0]
    assert torch.all(friction == fresh.friction.unsqueeze(-1))  # every geom of a world shares its draw
    assert friction.shape[0] == N and friction[:, 0].unique().numel() == N
    assert low <= friction.min() and friction.max() <= high
    offset = fresh.body_mass[:, fresh.trunk_id] - fresh.nominal_trunk_mass
    assert torch.allclose(offset, fresh.trunk_mass_offset, atol=1e-5) and offset.unique().numel() == N
    assert torch.equal(fresh.obs["critic"][:, 48], fresh.friction)


def test_friction_changes_the_physics() -> None:
    """Worlds that differ only in friction end up in different states: the per-world model copy is used."""
    rand = dataclasses.replace(STILL, friction=(0.05, 1.5))
    env = make_env(randomization=rand)
    generator = torch.Generator().manual_seed(1)
    action = torch.randn(1, 12, generator=generator).repeat(N, 1)
    env.qpos[:, 3:7] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the same heading everywhere
    for _ in range(40):
        env.step(action)
    spread = env.qpos[:, :2].std(dim=0).sum()
    assert spread > 1e-3, spread


def test_policy_observations_are_noisy_and_the_critic_clean(fresh: QuadrupedEnv) -> None:
    obs = fresh.observations()
    assert obs["policy"].shape == (N, 48) and obs["critic"].shape == (N, 55)
    difference = (obs["policy"] - obs["critic"][:, :48]).abs()
    assert difference[:, 33:36].max() > 0.5  # joint velocities get +-1.5 rad/s
    assert difference[:, 9:12].max() == 0  # commands never get noise
    quiet = make_env(noise=ObservationNoise(scale=0.0)).observations()
    assert torch.equal(quiet["policy"], quiet["critic"][:, :48])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, "2"])
def test_short_training_runs_end_to_end(log_root: Path, workers: str | None, request: pytest.FixtureRequest) -> None:
    if not workers:  # this run's play records a video
        request.getfixturevalue("osmesa")
    result = run_train(
        TASK, "--gpu-ids", "None", *(["--cpu-workers", workers] if workers else []), "--env.num-envs", "32",
        "--agent.num-steps-per-env", "8", "--agent.max-iterations", "3", "--log-root", str(log_root),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("iter ")]
    assert len(progress) == 3, result.stderr
    if workers:
        assert "All 2 ranks ended with identical parameters" in result.stderr
    (run_dir,) = (log_root / "velocity_flat_quadruped").iterdir()
    if workers:
        every_rank_agreed(run_dir, 2)
    assert (run_dir / "model_2.pt").is_file() and (run_dir / "exported" / "policy.pt").is_file()
    play = subprocess.run(
        [str(Path(sys.executable).with_name("play")), TASK, "--run", str(run_dir), "--gpu-ids", "None", "--json",
         "--num-envs", "4", "--num-steps", "10", *([] if workers else ["--video", "--video-length", "30",
         "--video-width", "96", "--video-height", "64"])],
        capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert play.returncode == 0, play.stderr
    assert json.loads(play.stdout)["steps"] == 10
    if not workers:
        import imageio.v3 as iio

        frames = iio.imread(run_dir / "videos" / "play" / "model_2.mp4")
        assert frames.shape == (30, 64, 96, 3) and frames.std() > 5
