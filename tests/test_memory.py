"""The memory pre-flight: the estimate's arithmetic, the refusal, --skip-memory-check and --dry-run (planning only,
nothing starts). scripts/memory_estimate.py compares the estimate with measured peak memory."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mjdist.cli import train
from mjdist.errors import ConfigError
from mjdist.launch.devices import DeviceRequest
from mjdist.launch.machine import Machine
from mjdist.tasks import get_task
from mjdist.train.config import TrainConfig
from mjdist.train.memory import CPU_RUNTIME_BYTES, check_fits, estimate_rank_memory
from mjdist.train.plan import plan_training

TASK = get_task("cartpole-balance")


def plan(cfg: TrainConfig, available: int, cpu_workers: int = 1) -> object:
    machine = Machine("", 0, 4, available_memory=available)
    request = DeviceRequest.from_flags(("None",), str(cpu_workers))
    return plan_training(TASK, cfg, request, machine, {}, datetime.datetime(2026, 12, 7))


def config(tmp_path: Path, num_envs: int, **options: object) -> TrainConfig:
    env = dataclasses.replace(TASK.env, num_envs=num_envs)
    return TrainConfig(env=env, agent=TASK.agent, log_root=tmp_path / "runs", **options)  # type: ignore[arg-type]


def test_the_estimate_is_a_runtime_plus_a_cost_per_world_that_grows_with_the_rollout_and_the_networks() -> None:
    small = estimate_rank_memory(TASK.model_path(), TASK.env, TASK.agent, on_gpu=False)
    longer = estimate_rank_memory(TASK.model_path(), TASK.env,
                                  dataclasses.replace(TASK.agent, num_steps_per_env=64), on_gpu=False)  # fmt: skip
    wider = dataclasses.replace(TASK.agent, actor=dataclasses.replace(TASK.agent.actor, hidden_dims=(1024, 1024)))
    bigger = estimate_rank_memory(TASK.model_path(), TASK.env, wider, on_gpu=False)
    assert small.fixed_bytes > CPU_RUNTIME_BYTES
    assert small.rank_bytes == small.fixed_bytes + TASK.env.num_envs * small.per_env_bytes
    assert longer.per_env_bytes > small.per_env_bytes
    assert bigger.fixed_bytes > small.fixed_bytes and bigger.per_env_bytes > small.per_env_bytes


def test_a_refusal_names_the_need_what_is_free_and_the_most_environments_that_fit() -> None:
    estimate = estimate_rank_memory(TASK.model_path(), dataclasses.replace(TASK.env, num_envs=10**6), TASK.agent, False)
    available = estimate.fixed_bytes + 1000 * estimate.per_env_bytes + 1
    with pytest.raises(ConfigError) as refusal:
        check_fits(estimate, 2, 2 * available, "this machine")
    assert re.fullmatch(
        r"--env.num-envs 1000000 x --agent.num-steps-per-env 32 needs about [0-9.]+ GB per rank \([0-9.]+ GB for 2 "
        r"ranks\), but this machine has [0-9.]+ GB free; use --env.num-envs 1000 or fewer, or add "
        r"--skip-memory-check to start anyway",
        str(refusal.value),
    )
    assert estimate.max_num_envs(available) == 1000
    check_fits(dataclasses.replace(estimate, num_envs=1000), 2, 2 * available, "this machine")


def test_planning_refuses_ranks_that_do_not_fit_together_unless_told_to_skip_the_check(tmp_path: Path) -> None:
    cfg = config(tmp_path, 4096)
    needed = plan(cfg, 10**12).memory_per_rank_bytes  # type: ignore[attr-defined]
    plan(cfg, needed)
    with pytest.raises(ConfigError, match="for 2 ranks"):
        plan(cfg, 2 * needed - 1, cpu_workers=2)
    with pytest.raises(ConfigError, match="this machine has"):
        plan(cfg, needed - 1)
    plan(dataclasses.replace(cfg, skip_memory_check=True), needed - 1)
    plan(dataclasses.replace(cfg, dry_run=True), needed - 1)  # a dry run may plan for another machine
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    args = ["cartpole-balance", "--gpu-ids", "None", "--log-root", str(tmp_path), "--dry-run"]
    assert train.main([*args, "--env.num-envs", "64"]) == 0
    small = json.loads(capsys.readouterr().out)["memory_per_rank_bytes"]
    assert train.main([*args, "--env.num-envs", "65536"]) == 0
    large = json.loads(capsys.readouterr().out)["memory_per_rank_bytes"]
    assert CPU_RUNTIME_BYTES < small < large
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_default_contact_sizes_are_mujoco_warps() -> None:
    import mujoco
    from mujoco_warp._src.io import _default_nconmax, _default_njmax

    from mjdist.train.memory import default_contact_sizes, read_model

    for name in ("cartpole-balance", "velocity-flat-quadruped"):
        path = str(get_task(name).model_path())
        model = mujoco.MjModel.from_xml_path(path)
        assert default_contact_sizes(read_model(path)) == (_default_nconmax(model), _default_njmax(model))


PLAN_IN_A_FRESH_PROCESS = """
import datetime, sys
from pathlib import Path
from mjdist.launch.devices import DeviceRequest
from mjdist.launch.machine import Machine
from mjdist.tasks import get_task
from mjdist.train.config import TrainConfig
from mjdist.train.plan import plan_training
spec = get_task("cartpole-balance")
cfg = TrainConfig(env=spec.env, agent=spec.agent, log_root=Path(sys.argv[1]))
plan = plan_training(spec, cfg, DeviceRequest.from_flags(("None",), None), Machine("", 0, 1, available_memory=10**12),
                     {}, datetime.datetime.now())
print(plan.memory_per_rank_bytes, "mujoco" in sys.modules)
"""


def test_planning_leaves_mujoco_to_the_ranks(tmp_path: Path) -> None:
    """MuJoCo reads MUJOCO_GL once, on import: planning (in the launcher, or the single rank) must not import it."""
    command = [sys.executable, "-c", PLAN_IN_A_FRESH_PROCESS, str(tmp_path / "runs")]
    estimate, imported = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    assert int(estimate) > CPU_RUNTIME_BYTES
    assert imported == "False"
    assert list(tmp_path.iterdir()) == []
