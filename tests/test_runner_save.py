"""The runner never saves a checkpoint of non-finite parameters: it refuses with the path and iteration, and
writes nothing (neither the checkpoint nor its ONNX export)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from mjdist_tasks.cartpole import BALANCE

from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.rl.health import NonFiniteTrainingError
from mjdist.rl.runner import DistributedRunner


@pytest.fixture(scope="module")
def runner() -> DistributedRunner:
    env = BALANCE.load_env_class()(dataclasses.replace(BALANCE.env, num_envs=4), device="cpu", seed=0)
    return DistributedRunner(RslRlVecEnv(env), BALANCE.agent.to_rsl_rl(""), log_dir=None, device="cpu",
                             task=BALANCE.name)  # fmt: skip


@pytest.mark.parametrize(("network", "value"), [("actor", float("nan")), ("critic", float("inf"))])
def test_a_save_of_non_finite_parameters_is_refused_and_writes_nothing(
    runner: DistributedRunner, network: str, value: float, tmp_path: Path
) -> None:
    runner.current_learning_iteration = 6
    parameter = next(getattr(runner.alg, network).parameters())
    finite = parameter.detach().clone()
    with torch.no_grad():
        parameter.view(-1)[0] = value
    try:
        path = tmp_path / "model_6.pt"
        with pytest.raises(NonFiniteTrainingError) as raised:
            runner.save(str(path))
        assert str(raised.value) == f"not saving {path}: non-finite parameters at iteration 7"
        assert list(tmp_path.iterdir()) == []
    finally:
        with torch.no_grad():
            parameter.copy_(finite)


def test_finite_parameters_are_saved(
    runner: DistributedRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = []
    monkeypatch.setattr(runner._onnx, "export", lambda policy, path, metadata: exported.append(path))  # seconds
    runner.current_learning_iteration = 6
    runner.save(str(tmp_path / "model_6.pt"))
    assert [path.name for path in tmp_path.iterdir()] == ["model_6.pt"]
    assert [path.name for path in exported] == ["model_6.onnx"]
