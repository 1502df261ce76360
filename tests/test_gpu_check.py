"""scripts/gpu-check is ready for a GPU machine: its plan (dry run), output parsing and JSON summary, on the CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import REPO

from mjdist.bench.gpu_check import (
    BENCH_ENVS,
    NO_GPU,
    Outcome,
    context_gpus,
    main,
    plan,
    play_metrics,
    summarize,
    training_metrics,
)


def _names(gpus: int) -> list[str]:
    return [step.name for step in plan(gpus, Path("/work"), Path("bench-results/results.jsonl"))]


def test_plan_covers_every_check_and_multi_gpu_only_with_two_gpus() -> None:
    one = ["train-quadruped", "sync-free-step", "train-cartpole", "play-cartpole", "play-video",
           "bench-cartpole-balance", "bench-velocity-flat-quadruped", "contexts-cpu-workers",
           "contexts-one-gpu"]  # fmt: skip
    assert _names(1) == one
    assert _names(2) == [*one[:7], "train-2-gpus", "train-all-gpus", *one[7:]]
    steps = {step.name: step for step in plan(4, Path("/work"), Path("r.jsonl"))}
    assert steps["train-quadruped"].background and steps["train-quadruped"].argv[3] == "3"  # alone on the last GPU
    assert steps["bench-cartpole-balance"].argv[-6:] == ("--repetitions", "1", "--duration", "1", "--results",
                                                         "r.jsonl")  # fmt: skip
    assert all(envs in steps["bench-cartpole-balance"].argv for envs in BENCH_ENVS)
    assert steps["contexts-cpu-workers"].watch_contexts and "--cpu-workers" in steps["contexts-cpu-workers"].argv
    serial_s = sum(step.timeout_s for step in steps.values() if not step.background)
    assert serial_s > 0


def test_dry_run_prints_the_plan_as_one_json_object() -> None:
    result = subprocess.run([str(REPO / "scripts" / "gpu-check"), "--dry-run", "--gpus", "2"], capture_output=True,
                            text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    planned = json.loads(line)
    assert planned["gpus"] == 2 and [step["name"] for step in planned["steps"]] == _names(2)


def test_no_gpu_is_one_line(capsys) -> None:
    assert main(["--gpus", "0"]) == 2
    assert capsys.readouterr().err == f"gpu-check: error: {NO_GPU}\n"


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
    outcomes = [Outcome("play-cartpole", 0, 3.0, play), Outcome("train-quadruped", 130, 300.2, {"mean_reward": 12.0}),
                Outcome("bench-cartpole-balance", 1, 5.0, tail="Traceback ...")]  # fmt: skip
    summary = summarize(outcomes, ["GPU 0: NVIDIA H200"])
    assert summary["gpus"] == ["GPU 0: NVIDIA H200"] and summary["cartpole_balances"] is True
    assert summary["ok"] is False  # the bench failed; the interrupted 5-minute training did not
    assert summary["steps"]["train-quadruped"] == {"ok": True, "returncode": 130, "wall_s": 300.2, "mean_reward": 12.0}
    assert summary["steps"]["bench-cartpole-balance"]["tail"] == "Traceback ..."
    json.dumps(summary)
