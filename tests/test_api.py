"""The Python API: mjdist.train, mjdist.play and mjdist.launch, their typed errors, and the light import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import HELPERS, REPO, subprocess_env

import mjdist
from mjdist.rl.config import AgentConfig

TASK = "cartpole-balance"
TINY_AGENT = {"max_iterations": 3, "num_steps_per_env": 8, "save_interval": 2, "logger": "none"}
DEADLINE_S = 15.0
"""From a rank's exception to the caller's; the goal is a few seconds, CI machines get some slack."""


def test_import_is_light_and_every_public_name_resolves() -> None:
    code = (
        "import sys, mjdist\n"
        "heavy = [m for m in ('torch', 'warp', 'mujoco', 'torchrunx') if m in sys.modules]\n"
        "print(heavy, all(getattr(mjdist, name) is not None for name in mjdist.__all__))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.stdout.strip() == "[] True", result.stderr


def test_task_defaults_are_frozen_configs_to_replace() -> None:
    import dataclasses

    spec = mjdist.get_task(TASK)
    assert isinstance(spec.agent, mjdist.AgentConfig) and isinstance(spec.env, mjdist.EnvConfig)
    assert dataclasses.replace(spec.env, num_envs=8).num_envs == 8 and spec.env.num_envs == 512
    assert TASK in mjdist.registered_tasks()


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch, no_gpus: None) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def _file_in_the_way(root: Path) -> Path:
    root.mkdir()
    (root / "a-file").write_text("in the way")
    return root / "a-file" / "runs"


BAD_CALLS: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("task", lambda root: mjdist.train("cartpole-balanse", log_root=root), mjdist.UsageError, "unknown task"),
    ("value", lambda root: mjdist.train(TASK, env={"num_envs": 0}, log_root=root), mjdist.ConfigError,
     "--env.num-envs must be at least 1, got 0"),
    ("field", lambda root: mjdist.train(TASK, env={"num_env": 8}, log_root=root), mjdist.ConfigError,
     "env has no field 'num_env'"),
    ("type", lambda root: mjdist.train(TASK, agent={"algorithm": {"learning_rate": "fast"}}, log_root=root),
     mjdist.ConfigError, "agent.algorithm.learning_rate takes a float, got 'fast'"),
    ("class", lambda root: mjdist.train(TASK, env=AgentConfig(), log_root=root), mjdist.ConfigError,
     "or a dict of overrides, got a AgentConfig"),
    ("gpu", lambda root: mjdist.train(TASK, gpu_ids=[0], log_root=root), mjdist.DeviceSelectionError,
     "needs a GPU, but none is visible"),
    ("workers", lambda root: mjdist.train(TASK, gpu_ids=None, cpu_workers=0, log_root=root),
     mjdist.DeviceSelectionError, "--cpu-workers must be at least 1, got 0"),
    ("resume", lambda root: mjdist.train(TASK, gpu_ids=None, resume=root / "nothing", log_root=root),
     mjdist.CheckpointError, "does not exist"),
    ("log root", lambda root: mjdist.train(TASK, gpu_ids=None, log_root=_file_in_the_way(root)), mjdist.UsageError,
     "is a file, not a directory"),
    ("play budget", lambda root: mjdist.play(TASK, agent="zero", num_steps=0, log_root=root), mjdist.UsageError,
     "--num-steps must be at least 1, got 0"),
    ("play run", lambda root: mjdist.play(TASK, log_root=root), mjdist.CheckpointError, "no run with checkpoints"),
    ("launch", lambda root: mjdist.launch(print, gpu_ids=None, cpu_workers="many"), mjdist.DeviceSelectionError,
     "--cpu-workers takes a positive integer or 'auto', got 'many'"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [case[1:] for case in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_typed_errors_and_write_nothing(
    call: Callable[[Path], object], error: type[Exception], message: str, tmp_path: Path, no_gpu: None
) -> None:
    root = tmp_path / "runs"
    with pytest.raises(error) as info:
        call(root)
    assert isinstance(info.value, mjdist.UsageError) and isinstance(info.value, mjdist.MjdistError)
    assert message in str(info.value) and "\n" not in str(info.value)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert written in ([], [Path("runs"), Path("runs/a-file")])  # only what the test itself put there


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> mjdist.TrainResult:
    """One short training in this process, through the function."""
    return mjdist.train(
        TASK,
        gpu_ids=None,
        env={"num_envs": 32},
        agent={**TINY_AGENT, "algorithm": {"learning_rate": 5e-4}},
        log_root=tmp_path_factory.mktemp("api") / "runs",
        run_name="api",
    )


@pytest.mark.slow
def test_train_in_one_process_returns_the_run_and_its_metrics(trained: mjdist.TrainResult) -> None:
    run_dir = trained.run_dir
    assert run_dir.is_dir() and run_dir.name.endswith("_api") and run_dir.parent.name == "cartpole_balance"
    assert (trained.task, trained.world_size, trained.devices, trained.iterations) == (TASK, 1, ("cpu",), 3)
    assert trained.checkpoints == (run_dir / "model_0.pt", run_dir / "model_2.pt")
    exported = run_dir / "exported"
    assert trained.exports == tuple(
        exported / name for name in ("model_0.onnx", "model_2.onnx", "policy.onnx", "policy.pt")
    )
    summary = json.loads((run_dir / "summary.json").read_text())  # written by the function as by the command
    assert (summary["status"], summary["iterations"], summary["parameter_digest"]) == (
        "finished",
        3,
        trained.parameter_digest,
    )
    assert summary["exports"] == [str(path) for path in trained.exports]
    assert trained.mean_reward is not None and trained.mean_reward > 0
    assert trained.mean_episode_length is not None and trained.mean_episode_length >= 1
    assert trained.env_steps_per_s is not None and trained.env_steps_per_s > 0
    assert 0 < sum(t.collect_s + t.learn_s for t in trained.ranks[0].iterations) < trained.wall_time_s
    assert trained.parameter_digest == trained.ranks[0].parameter_digest and len(trained.parameter_digest) == 64
    agent = yaml.safe_load((run_dir / "params" / "agent.yaml").read_text())
    assert agent["max_iterations"] == 3 and agent["algorithm"]["learning_rate"] == 5e-4
    assert json.loads(json.dumps(trained.to_json()))["checkpoints"][-1] == str(run_dir / "model_2.pt")


@pytest.mark.slow
def test_train_with_two_cpu_workers_returns_matching_ranks(tmp_path: Path) -> None:
    result = mjdist.train(
        TASK, gpu_ids=None, cpu_workers=2, env={"num_envs": 32}, agent={**TINY_AGENT, "max_iterations": 2},
        log_root=tmp_path,
    )  # fmt: skip
    assert (result.world_size, result.devices, result.iterations) == (2, ("cpu", "cpu"), 2)
    assert [rank.rank for rank in result.ranks] == [0, 1]
    assert {rank.parameter_digest for rank in result.ranks} == {result.parameter_digest}
    assert result.ranks[0].observation_digest != result.ranks[1].observation_digest
    assert result.mean_reward is not None and result.ranks[1].mean_reward is None  # episodes are recorded on rank 0
    assert result.checkpoints[-1] == result.run_dir / "model_1.pt"
    assert (result.run_dir / "torchrunx").is_dir()


@pytest.mark.slow
def test_a_refused_play_video_leaves_the_process_able_to_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_gpu: None
) -> None:
    """Where no GL backend can render, play(video=True) is refused, and nothing it chose stays behind: the next
    train() in the same process trains (a MUJOCO_GL=osmesa left in os.environ broke it)."""
    from mjdist import rendering

    if rendering.osmesa_failure() is None:  # this machine renders: make the choice see one that does not
        monkeypatch.setattr(rendering, "osmesa_failure", lambda: "libOSMesa is not installed")
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    cache_dir()  # torch sets TORCHINDUCTOR_CACHE_DIR on its first use; training may be that use
    before = dict(os.environ)
    with pytest.raises(mjdist.UsageError, match="libOSMesa is not installed"):
        mjdist.play(TASK, agent="zero", gpu_ids=None, video=True, log_root=tmp_path)
    assert dict(os.environ) == before
    result = mjdist.train(TASK, gpu_ids=None, env={"num_envs": 16}, agent={**TINY_AGENT, "max_iterations": 1},
                          log_root=tmp_path)  # fmt: skip
    assert result.iterations == 1 and dict(os.environ) == before


@pytest.mark.slow
def test_play_summarizes_a_checkpoint(trained: mjdist.TrainResult) -> None:
    summary = mjdist.play(TASK, run=trained.run_dir, gpu_ids=None, num_envs=4, num_steps=30)
    assert summary.checkpoint == str(trained.checkpoints[-1]) and summary.steps == 30 and summary.video is None
    assert summary.episodes > 0 and summary.mean_reward is not None


@pytest.fixture
def helpers_on_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/helpers importable here and, through PYTHONPATH, on the ranks."""
    monkeypatch.syspath_prepend(str(HELPERS))
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])


@pytest.mark.slow
def test_launch_returns_each_ranks_value_in_rank_order(helpers_on_the_ranks: None) -> None:
    from rank_functions import report

    two = mjdist.launch(report, 10.0, gpu_ids=None, cpu_workers=2, seed=7, scale=2.0)
    assert [(r["rank"], r["world_size"], r["warp_device"], r["seed"]) for r in two] == [
        (0, 2, "cpu", 7),
        (1, 2, "cpu", 8),
    ]
    assert [r["sum"] for r in two] == [42.0, 42.0]  # (10 + 0) + (10 + 1), times 2
    assert len({two[0]["pid"], two[1]["pid"], os.getpid()}) == 3  # each rank in its own process
    (one,) = mjdist.launch(report, 10.0, gpu_ids=None)
    assert (one["rank"], one["world_size"], one["sum"], one["pid"]) == (0, 1, 10.0, os.getpid())


@pytest.mark.slow
def test_a_failing_rank_surfaces_fast_by_rank_and_leaves_no_process(helpers_on_the_ranks: None, tmp_path: Path) -> None:
    from rank_functions import fail_on

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    stamp = tmp_path / "raised-at"
    with pytest.raises(mjdist.RankFailedError) as info:
        mjdist.launch(fail_on, 1, str(stamp), gpu_ids=None, cpu_workers=2)
    assert time.time() - float(stamp.read_text()) < DEADLINE_S
    assert info.value.rank == 1 and str(info.value) == "rank 1: ValueError: no luck on rank 1"
    time.sleep(0.5)
    survivors = [c for c in me.children(recursive=True) if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_raises_keyboard_interrupt(helpers_on_the_ranks: None, tmp_path: Path) -> None:
    from rank_functions import nap

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    def interrupt_once_both_ranks_nap() -> None:
        while len(list(tmp_path.iterdir())) < 2:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in the terminal would, to the launching process

    timer = threading.Thread(target=interrupt_once_both_ranks_nap, daemon=True)
    timer.start()
    with pytest.raises(KeyboardInterrupt, match="every rank stopped on request"):
        mjdist.launch(nap, str(tmp_path), gpu_ids=None, cpu_workers=2)
    timer.join(timeout=1)
    time.sleep(0.5)
    survivors = [c for c in me.children(recursive=True) if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_every_rank_at_once(helpers_on_the_ranks: None, tmp_path: Path) -> None:
    from rank_functions import stubborn_nap

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    def interrupt_twice() -> None:
        wait_for(lambda: {path.name for path in tmp_path.iterdir()} >= {"0", "1"})
        os.kill(os.getpid(), signal.SIGINT)  # asks the ranks to stop after their iteration; they nap on
        wait_for(lambda: {path.name for path in tmp_path.iterdir()} >= {"0.asked", "1.asked"})
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_twice, daemon=True)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt, match="every rank was stopped at once"):  # else they return after a minute
        mjdist.launch(stubborn_nap, str(tmp_path), gpu_ids=None, cpu_workers=2)
    interrupter.join(timeout=1)
    time.sleep(0.5)
    survivors = [c for c in me.children(recursive=True) if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []


def _example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_sweep_example_prints_a_table(tmp_path: Path) -> None:
    out = _example(
        "sweep_learning_rate.py", "--learning-rates", "1e-3", "3e-3", "--iterations", "2", "--num-envs", "16",
        "--num-steps-per-env", "8", "--log-root", str(tmp_path),
    )  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line.strip().startswith(("0.001 ", "0.003 "))]
    assert [float(row[0]) for row in rows] == [1e-3, 3e-3] and all(float(row[1]) > 0 for row in rows), out
    assert len(list((tmp_path / "cartpole_balance").iterdir())) == 2


@pytest.mark.slow
def test_evaluate_example_scores_every_checkpoint_over_two_ranks(trained: mjdist.TrainResult) -> None:
    out = _example("evaluate_checkpoints.py", str(trained.run_dir), "--num-envs", "4", "--num-episodes", "4")
    assert "2 checkpoints scored on 2 ranks" in out, out
    rows = [line.split("|") for line in out.splitlines() if ".pt " in line]
    assert [row[0].strip() for row in rows] == ["model_0.pt", "model_2.pt"] and all(float(r[1]) > 0 for r in rows)
