"""Exported policies: the ONNX file computes what the TorchScript policy computes, for every bundled task, and its
metadata says how to feed it and what its actions mean."""

from __future__ import annotations

import dataclasses
import json
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.rl import exports
from mjdist.rl.exports import (
    EXPORT_DIR,
    ONNX_INPUT,
    ONNX_POLICY,
    TORCHSCRIPT_POLICY,
    OnnxExporter,
    checkpoint_onnx_path,
    export_final_policy,
    export_onnx,
    onnx_metadata,
)
from mjdist.rl.runner import DistributedRunner
from mjdist.tasks import registered_tasks

pytestmark = pytest.mark.slow

ITERATION = 7


def trained_looking_runner(task: str) -> DistributedRunner:
    """A runner of ``task`` whose observation normalizer holds random statistics and whose network parameters
    (biases included, which start at 0) are perturbed from their initial values."""
    spec = registered_tasks()[task]
    env = spec.load_env_class()(dataclasses.replace(spec.env, num_envs=4), device="cpu", seed=0)
    runner = DistributedRunner(RslRlVecEnv(env), spec.agent.to_rsl_rl(""), log_dir=None, device="cpu", task=task)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in runner.alg.get_policy().mlp.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
        normalizer = runner.alg.get_policy().obs_normalizer
        normalizer._mean.copy_(torch.randn(normalizer._mean.shape, generator=generator))
        normalizer._var.copy_(torch.rand(normalizer._var.shape, generator=generator) * 4 + 0.1)
        normalizer._std.copy_(normalizer._var.sqrt())
    return runner


@pytest.mark.parametrize("task", ["cartpole-balance", "velocity-flat-quadruped"])
def test_onnx_and_torchscript_policies_agree_and_onnx_carries_metadata(task: str, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime (uv's dev group) runs the ONNX export")
    runner = trained_looking_runner(task)
    env = runner.env.env
    checkpoint = tmp_path / f"model_{ITERATION}.pt"
    export_onnx(runner.alg.get_policy(), checkpoint_onnx_path(checkpoint), onnx_metadata(env, task, ITERATION))
    export_final_policy(runner.alg.get_policy(), tmp_path, checkpoint)
    exported = tmp_path / EXPORT_DIR
    assert sorted(path.name for path in exported.iterdir()) == sorted([ONNX_POLICY, TORCHSCRIPT_POLICY, "model_7.onnx"])

    width = env.obs["policy"].shape[-1]
    observations = torch.randn(64, width, generator=torch.Generator().manual_seed(2)) * 3
    session = onnxruntime.InferenceSession(str(exported / ONNX_POLICY), providers=["CPUExecutionProvider"])
    (onnx_actions,) = session.run(None, {ONNX_INPUT: observations.numpy()})
    torchscript_actions = torch.jit.load(str(exported / TORCHSCRIPT_POLICY))(observations)
    torch.testing.assert_close(torch.from_numpy(onnx_actions), torchscript_actions, rtol=1e-5, atol=1e-5)
    (one,) = session.run(None, {ONNX_INPUT: observations[:1].numpy()})  # any batch size, one included
    torch.testing.assert_close(torch.from_numpy(one), torchscript_actions[:1], rtol=1e-5, atol=1e-5)

    metadata = {key: json.loads(value) if key != "task" and key != "mjdist_version" else value
                for key, value in session.get_modelmeta().custom_metadata_map.items()}  # fmt: skip
    assert metadata["task"] == task and metadata["mjdist_version"] == version("mjdist")
    assert metadata["checkpoint_iteration"] == ITERATION
    assert sum(term["size"] for term in metadata["observation_terms"]) == width
    assert metadata["control_dt"] == pytest.approx(env.step_dt)
    assert metadata["action_scale"] == env.cfg.action_scale and metadata["action_clip"] == env.cfg.action_clip
    assert len(metadata["action_names"]) == onnx_actions.shape[1] == env.num_actions
    if task == "cartpole-balance":
        assert [term["name"] for term in metadata["observation_terms"]] == [
            "cart_position", "cos_pole_angle", "sin_pole_angle", "cart_velocity", "pole_velocity"
        ]  # fmt: skip
        assert metadata["action_names"] == ["slide"] and "default_joint_pos" not in metadata
    else:
        terms = [(term["name"], term["size"]) for term in metadata["observation_terms"]]
        assert terms == [("base_lin_vel", 3), ("base_ang_vel", 3), ("projected_gravity", 3), ("velocity_command", 3),
                         ("joint_pos", 12), ("joint_vel", 12), ("last_action", 12)]  # fmt: skip
        assert metadata["action_names"][:3] == ["FR_hip", "FR_thigh", "FR_calf"]
        assert metadata["joint_names"][:3] == ["FR_hip_joint", "FR_thigh_joint", "FR_calf_joint"]
        standing = env.mj_model.keyframe("stand").qpos[7:]
        assert metadata["default_joint_pos"] == pytest.approx(standing.tolist())
        assert metadata["joint_stiffness"] == [30.0] * 12 and metadata["joint_damping"] == [0.8] * 12


def test_observation_terms_that_do_not_add_up_are_refused() -> None:
    runner = trained_looking_runner("cartpole-balance")
    env = runner.env.env
    env.policy_observation_terms = lambda: {"cart_position": 1}
    with pytest.raises(ValueError, match="policy_observation_terms\\(\\) add up to 1, not 5"):
        onnx_metadata(env, "cartpole-balance", 0)


def test_later_checkpoints_reuse_the_traced_graph_with_their_own_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime (uv's dev group) runs the ONNX export")
    traces = []
    trace = exports._trace
    monkeypatch.setattr(exports, "_trace", lambda module: traces.append(module) or trace(module))
    runner = trained_looking_runner("cartpole-balance")
    policy = runner.alg.get_policy()
    exporter = OnnxExporter()
    observations = torch.randn(16, runner.env.env.obs["policy"].shape[-1], generator=torch.Generator().manual_seed(3))
    exporter.export(policy, tmp_path / "model_0.onnx", {"checkpoint_iteration": "0"})
    traced = exporter._program
    with torch.no_grad():  # training moves the weights and the normalizer's statistics
        for parameter in policy.mlp.parameters():
            parameter.mul_(1.5).add_(0.1)
        policy.obs_normalizer._mean.add_(0.7)
        policy.obs_normalizer._std.mul_(2.0)
    exporter.export(policy, tmp_path / "model_1.onnx", {"checkpoint_iteration": "1"})
    assert exporter._program is traced and len(traces) == 1  # no second trace
    with torch.no_grad():
        expected = policy.as_jit().to("cpu").eval()(observations)
    session = onnxruntime.InferenceSession(str(tmp_path / "model_1.onnx"), providers=["CPUExecutionProvider"])
    (actions,) = session.run(None, {ONNX_INPUT: observations.numpy()})
    torch.testing.assert_close(torch.from_numpy(actions), expected, rtol=1e-5, atol=1e-5)
    assert session.get_modelmeta().custom_metadata_map["checkpoint_iteration"] == "1"
    first = onnxruntime.InferenceSession(str(tmp_path / "model_0.onnx"), providers=["CPUExecutionProvider"])
    assert not torch.allclose(torch.from_numpy(first.run(None, {ONNX_INPUT: observations.numpy()})[0]), expected)
