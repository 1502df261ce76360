"""2 CPU ranks over gloo through the real launcher: identical parameters, different experience, one writer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HELPERS, REPO, every_rank_agreed, run_train, subprocess_env

pytestmark = pytest.mark.slow


@pytest.fixture
def markerless_kernel_cache(tmp_path: Path) -> Path:
    """A WARP_CACHE_PATH holding a copy of this machine's compiled kernels but no built-markers, so that a marker
    found there after a launch was written by that launch."""
    import warp as wp

    from mjdist.train.kernel_cache import MARKER_DIR

    wp.init()
    cache = tmp_path / "warp-cache"
    shutil.copytree(wp.config.kernel_cache_dir, cache / wp.config.version, ignore=shutil.ignore_patterns(MARKER_DIR))
    return cache


def test_two_cpu_ranks_stay_identical_and_explore_differently(log_root: Path, markerless_kernel_cache: Path) -> None:
    import warp as wp

    marker = cartpole_marker(num_envs=64)
    launched_marker = markerless_kernel_cache / wp.config.version / marker.relative_to(wp.config.kernel_cache_dir)
    assert not launched_marker.exists()
    result = subprocess.run(
        [sys.executable, str(HELPERS / "launch_task.py"), str(log_root), "2", "6"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=subprocess_env(WARP_CACHE_PATH=str(markerless_kernel_cache)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ranks = json.loads(result.stdout)
    assert [rank["rank"] for rank in ranks] == [0, 1]
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]
    assert ranks[0]["observation_digest"] != ranks[1]["observation_digest"]
    assert launched_marker.exists()  # written by this launch: the next 2-rank launch builds on both ranks at once

    (run_dir,) = (log_root / "cartpole_balance").iterdir()  # one run directory for both ranks
    assert sorted(p.name for p in run_dir.glob("model_*.pt")) == ["model_0.pt", "model_5.pt"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    launch = yaml.safe_load((run_dir / "params" / "launch.yaml").read_text())
    assert [rank["seed"] for rank in launch["ranks"]] == [42, 43]
    (log_dir,) = (run_dir / "torchrunx").iterdir()
    rank_logs = {path.name: path.read_text() for path in log_dir.iterdir()}
    assert {"localhost[0].log", "localhost[1].log", "localhost.log"} <= set(rank_logs)
    assert "iter 6/6" in rank_logs["localhost[0].log"]


def test_train_command_with_cpu_workers(log_root: Path) -> None:
    result = run_train(
        "cartpole-balance", "--gpu-ids", "None", "--cpu-workers", "2", "--env.num-envs", "64",
        "--agent.max-iterations", "2", "--log-root", str(log_root), "--run-name", "two-workers",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "env-steps/s (2 ranks x 64 envs = 128)" in result.stderr
    assert "All 2 ranks ended with identical parameters" in result.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    assert every_rank_agreed(run_dir, 2)["hosts"] == ["localhost"]
    (log_dir,) = (run_dir / "torchrunx").iterdir()
    assert {"localhost[0].log", "localhost[1].log"} <= {path.name for path in log_dir.iterdir()}


@pytest.mark.parametrize("network", ["actor", "critic"])
def test_the_parameter_digest_covers_actor_and_critic(network: str) -> None:
    import torch

    from mjdist.train.rank import network_digest

    def model() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(3, 2))  # same key names in both networks, as in rsl_rl

    torch.manual_seed(0)
    actor, critic = model(), model()
    before = network_digest(actor, critic)
    with torch.no_grad():
        (actor if network == "actor" else critic)[0].weight[0, 0] += 1.0
    assert network_digest(actor, critic) != before


def cartpole_marker(**env: object) -> Path:
    import dataclasses

    import warp as wp
    from mjdist_tasks.cartpole import BALANCE

    from mjdist.train.kernel_cache import built_marker

    wp.init()
    return built_marker("faulty-cartpole", dataclasses.replace(BALANCE.env, **env), "cpu")  # helpers/faulty_task


def test_the_built_marker_is_per_environment_and_lives_in_the_kernel_cache() -> None:
    import warp as wp

    marker = cartpole_marker(num_envs=64)
    assert marker.parent.parent == Path(wp.config.kernel_cache_dir)
    assert cartpole_marker(num_envs=64) == marker
    assert cartpole_marker(num_envs=65) != marker
