"""scripts/gpu-check is ready for a GPU machine: its plan and budget, its interpreter option, how it runs and stops
processes, its frame counter and output parsing, on the CPU."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))

from gpu_check import (
    BENCH_ENVS,
    BUDGET_S,
    NO_GPU,
    Runner,
    Step,
    main,
    plan,
    plan_budget_s,
    run_plan,
)
from gpu_check_outputs import Outcome, context_gpus, play_metrics, summarize, training_metrics

from mjdist.cli import bench
from mjdist.launch.machine import Machine

PYTHON = Path(sys.executable)
GPU_CHECK = str(REPO / "scripts" / "gpu-check")


def _plan(gpus: int, quick: bool = False) -> list[Step]:
    return plan(gpus, Path("/work"), Path("r.jsonl"), PYTHON, quick)


def _names(gpus: int, quick: bool = False) -> list[str]:
    return [step.name for step in _plan(gpus, quick)]


def test_plan_covers_every_check_and_multi_gpu_only_with_two_gpus() -> None:
    benches = ["bench-cartpole-balance", "bench-velocity-flat-quadruped"]
    checks = ["sync-free-step", "train-cartpole", "play-cartpole", "play-video-fallback", "contexts-cpu-workers",
              "contexts-one-gpu"]  # fmt: skip
    assert _names(1) == [*benches, "train-quadruped", *checks]
    assert _names(2) == ["train-quadruped", *benches, *checks, "train-2-gpus", "train-all-gpus"]
    assert _names(1, quick=True) == [*benches, *checks[:4]]
    steps = {step.name: step for step in _plan(4)}
    assert steps["train-quadruped"].background and steps["train-quadruped"].argv[3] == "3"  # alone on the last GPU
    assert steps["bench-cartpole-balance"].argv[-6:] == ("--repetitions", "1", "--duration", "1", "--results",
                                                         "r.jsonl")  # fmt: skip
    assert all(envs in steps["bench-cartpole-balance"].argv for envs in BENCH_ENVS)
    assert steps["contexts-cpu-workers"].watch_contexts and "--cpu-workers" in steps["contexts-cpu-workers"].argv
    assert (
        steps["play-video-fallback"].env and not steps["play-cartpole"].env and "--video" in steps["play-cartpole"].argv
    )
    assert all(Path(step.argv[0]).parent == PYTHON.parent for step in steps.values())


@pytest.mark.parametrize(("gpus", "quick"), [(1, False), (2, False), (8, False), (1, True), (2, True)])
def test_bench_rows_come_only_from_steps_alone_on_their_gpus(gpus: int, quick: bool) -> None:
    """A benchmark never shares its GPU with the background training: it waits for it (exclusive) or the
    training is on another GPU; multi-GPU training, which takes every GPU, waits too."""
    steps = _plan(gpus, quick)
    background = [step for step in steps if step.background]
    for position, step in enumerate(steps):
        if "--results" in step.argv or len(step.gpus) > 1:
            started = [b for b in background if steps.index(b) < position]
            assert all(step.exclusive or not set(b.gpus) & set(step.gpus) for b in started), step.name


def test_the_budget_is_a_constant_each_plan_keeps() -> None:
    """Every step using its whole time limit: one GPU under 8 minutes, --quick under 5."""
    assert BUDGET_S["one-gpu"] < 8 * 60 and BUDGET_S["quick"] < 5 * 60
    assert plan_budget_s(_plan(1)) <= BUDGET_S["one-gpu"]
    assert all(plan_budget_s(_plan(gpus)) <= BUDGET_S["multi-gpu"] for gpus in (2, 4, 8))
    assert all(plan_budget_s(_plan(gpus, quick=True)) <= BUDGET_S["quick"] for gpus in (1, 2))
    # the background training overlaps the checks after it; an exclusive step waits for it to end
    assert plan_budget_s([Step("a", (), 100, background=True), Step("b", (), 50)]) == 100 + 30
    assert plan_budget_s([Step("a", (), 100, background=True), Step("b", (), 50, exclusive=True)]) == 130 + 50


def test_the_bench_steps_run_on_a_machine_with_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one visible GPU (a faked machine snapshot), the plan's bench commands resolve their devices (they used
    to ask for --ranks 2, i.e. GPUs 0 and 1, and exit 2); the measuring itself is left out."""
    monkeypatch.setattr("mjdist.bench.devices.read_machine", lambda: Machine(None, 1, 16))
    measured = []
    monkeypatch.setattr(bench, "_measure", lambda cfg, devices: measured.append(devices.kind) or 0)
    bootstrap = importlib.import_module("mjdist.launch.bootstrap")  # (mjdist.launch is also a function's name)
    monkeypatch.setattr(bootstrap, "enter_device", lambda plan, identity: contextlib.nullcontext())
    for step in _plan(1) + _plan(1, quick=True):
        if Path(step.argv[0]).name == "bench":
            assert bench.main(list(step.argv[1:])) == 0, step.name
    assert measured == ["cuda"] * 4
    assert bench.main(["scaling", "--device", "cuda", "--ranks", "2"]) == 2  # scaling does need 2


def test_dry_run_prints_the_plan_as_one_json_object() -> None:
    result = subprocess.run([GPU_CHECK, "--dry-run", "--gpus", "2"], capture_output=True, text=True, timeout=120,
                            cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    planned = json.loads(line)
    assert planned["gpus"] == 2 and [step["name"] for step in planned["steps"]] == _names(2)
    assert planned["budget_s"] <= BUDGET_S["multi-gpu"]


def test_python_option_runs_everything_with_that_interpreter(tmp_path: Path) -> None:
    """--python runs gpu-check itself and every command with that interpreter and its directory's commands (no uv):
    here a directory of links to this venv's, with no GPU visible to its torch."""
    bin_dir = tmp_path / "node" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "train", "play", "bench"):
        (bin_dir / name).symlink_to(PYTHON.with_name(name))
    python = bin_dir / "python"
    env = {**os.environ, "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}  # no uv on PATH
    dry = subprocess.run([GPU_CHECK, "--python", str(python), "--dry-run", "--gpus", "1"], capture_output=True,
                         text=True, timeout=120, env=env)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    argv0 = {Path(step["argv"][0]) for step in json.loads(dry.stdout)["steps"]}
    assert argv0 == {bin_dir / "bench", bin_dir / "train", bin_dir / "play", python}
    counted = subprocess.run([GPU_CHECK, f"--python={python}"], capture_output=True, text=True, timeout=120, env=env)
    assert counted.returncode == 2 and counted.stderr.endswith(f"gpu-check: error: {NO_GPU}\n")  # torch counted
    (bin_dir / "train").unlink()
    missing = subprocess.run([GPU_CHECK, "--python", str(python)], capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no train there" in missing.stderr
    absent = subprocess.run([GPU_CHECK, "--python", str(tmp_path / "nope")], capture_output=True, text=True,
                            timeout=30, env=env)  # fmt: skip
    assert absent.returncode == 2 and absent.stderr.count("\n") == 1 and "--python" in absent.stderr


def test_a_bad_gpu_count_is_one_line(capsys) -> None:
    assert main(["--gpus", "0", "--dry-run"]) == 2
    assert capsys.readouterr().err == "gpu-check: error: --gpus must be at least 1, got 0\n"


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie left for its new parent to reap counts)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")")[1].split()[0] == "Z"


def _python_step(name: str, code: str, timeout_s: float = 60, **flags) -> Step:
    return Step(name, (sys.executable, "-c", code), timeout_s, **flags)


def test_a_chatty_background_process_never_blocks(tmp_path: Path) -> None:
    """Output goes to files: a background process printing 100k lines runs to its end while other steps run."""
    chatty = _python_step("chatty", "for i in range(100_000): print('iter', i, 'x' * 40)", background=True)
    quiet = _python_step("quiet", "import time; time.sleep(1)")
    started = time.perf_counter()
    outcomes = run_plan([chatty, quiet], Runner(tmp_path, PYTHON))
    assert time.perf_counter() - started < 30
    assert [(o.name, o.returncode, o.alongside) for o in outcomes] == [("quiet", 0, "chatty"), ("chatty", 0, None)]
    assert len((tmp_path / "logs" / "chatty.log").read_text().splitlines()) == 100_000


def test_a_step_past_its_limit_is_interrupted_then_killed(tmp_path: Path) -> None:
    """SIGINT at the time limit; a process that ignores it is killed after the grace, whatever it started."""
    stubborn = ("import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                "print(child.pid, flush=True); time.sleep(600)")  # fmt: skip
    runner = Runner(tmp_path, PYTHON, stop_grace_s=1)
    outcome = run_plan([_python_step("stubborn", stubborn, timeout_s=3)], runner)[0]
    assert outcome.returncode == -9 and not outcome.ok()
    child = int((tmp_path / "logs" / "stubborn.log").read_text().split()[0])
    time.sleep(0.5)
    assert _gone(child)


def test_workers_left_behind_by_a_launcher_are_killed(tmp_path: Path) -> None:
    """A step that exits and leaves a process in its group (as a killed launcher's workers would) ends the plan
    with that process killed."""
    orphaning = (
        "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']).pid)"
    )
    run_plan([_python_step("orphaning", orphaning)], Runner(tmp_path, PYTHON))
    orphan = int((tmp_path / "logs" / "orphaning.log").read_text())
    time.sleep(0.5)
    assert _gone(orphan)


def test_every_started_process_is_stopped_when_the_check_fails(tmp_path: Path) -> None:
    """A step that cannot even start ends the plan; the background process is stopped and reaped."""
    background = _python_step("background", "import time; time.sleep(600)", background=True)
    runner = Runner(tmp_path, PYTHON, stop_grace_s=5)
    with pytest.raises(FileNotFoundError):
        run_plan([background, Step("missing", (str(tmp_path / "no-such-command"),), 10)], runner)
    (process,) = runner.started
    assert process.returncode is not None  # reaped (SIGINT ends a Python sleep with KeyboardInterrupt)


def test_frames_are_counted_in_a_real_mp4(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (32, 32), fps=30, macro_block_size=1)
    writer.send(None)
    for value in range(37):
        writer.send(np.full((32, 32, 3), value * 6, dtype=np.uint8))
    writer.close()
    runner = Runner(tmp_path, PYTHON)
    assert runner.frames(str(video)) == 37
    assert runner.frames(str(tmp_path / "none.mp4")) is None and runner.frames(None) is None


def test_outputs_are_parsed_into_the_summary() -> None:
    train_output = (
        "iter 99/100 |    10,000 env-steps/s (4096 envs) | reward   450.00 | ep len  480.0 | 0.50 s/iter\n"
        "iter 100/100 |   120,500 env-steps/s (4096 envs) | reward   498.25 | ep len  500.0 | 0.40 s/iter\n"
    )
    assert training_metrics(train_output) == {"iterations": 100, "env_steps_per_s": 120500.0, "mean_reward": 498.25,
                                              "mean_episode_length": 500.0}  # fmt: skip
    assert training_metrics("iter 1/5 | 9 env-steps/s (2 envs) | reward      n/a | ep len    n/a | 1 s")[
        "mean_reward"] is None  # fmt: skip
    play = play_metrics('Loaded checkpoint x\n{"mean_episode_length": 500.0, "episodes": 64}\n')
    assert play == {"mean_episode_length": 500.0, "episodes": 64}
    query = "4242, GPU-aaa\n4243, GPU-bbb\n999, GPU-ccc\n"
    assert context_gpus(query, {4242, 4243}) == {"GPU-aaa", "GPU-bbb"}
    outcomes = [Outcome("play-cartpole", 0, 3.0, play, alongside="train-quadruped"),
                Outcome("train-quadruped", 130, 300.2, {"mean_reward": 12.0}),
                Outcome("bench-cartpole-balance", 1, 5.0, tail="Traceback ...")]  # fmt: skip
    summary = summarize(outcomes, ["NVIDIA H200"])
    assert summary["gpus"] == ["NVIDIA H200"] and summary["cartpole_balances"] is True
    assert summary["ok"] is False  # the bench failed; the interrupted background training did not
    assert summary["steps"]["train-quadruped"] == {"ok": True, "returncode": 130, "wall_s": 300.2, "mean_reward": 12.0}
    assert summary["steps"]["play-cartpole"]["alongside"] == "train-quadruped"
    assert summary["steps"]["bench-cartpole-balance"]["tail"] == "Traceback ..."
    assert (
        summarize([Outcome("play-cartpole", 0, 1.0, {"mean_episode_length": None})], [])["cartpole_balances"] is False
    )
    json.dumps(summary)
