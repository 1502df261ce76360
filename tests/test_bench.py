"""The bench command: every sub-benchmark in a tiny configuration writes well-formed records (no timing
assertions), the report renders from a results file, and bad input is one line with exit code 2."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, subprocess_env

from mjdist.bench import launch_time
from mjdist.bench.config import BENCHMARKS, BenchConfig, LaunchConfig
from mjdist.bench.devices import BenchDevices
from mjdist.bench.machine import DISTRIBUTIONS, provenance
from mjdist.bench.records import Provenance, Recorder, append_record, make_record
from mjdist.cli.bench import main
from mjdist.launch.machine import Machine
from mjdist.tasks import registered_tasks

BENCH = Path(sys.executable).with_name("bench")
CPU = BenchDevices("cpu", Machine(None, 0, 2))
TASK = "cartpole-balance"
TINY = ("--repetitions", "1", "--results")


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``bench`` console script."""
    return subprocess.run(
        [str(BENCH), *args], capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=REPO
    )


def read(results: Path, repetitions: int = 1) -> list[dict[str, Any]]:
    """The results file's records, each checked against the schema."""
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for record in records:
        check_schema(record, repetitions)
    return records


def check_schema(record: dict[str, Any], repetitions: int) -> None:
    assert record["schema"] == 1
    assert record["benchmark"] in BENCHMARKS
    assert record["task"] == TASK
    datetime.datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert set(record["machine"]) == {"hostname", "cpu_model", "cpu_count", "memory_gib", "gpu_model"}
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["memory_gib"] > 0
    assert set(record["versions"]) == {"python", *DISTRIBUTIONS}
    assert all(isinstance(version, str) for version in record["versions"].values())
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    assert isinstance(record["config"], dict) and record["metrics"]
    for stats in record["metrics"].values():
        assert set(stats) == {"median", "min", "max", "values"}
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert len(stats["values"]) == repetitions


def test_physics_and_env_records_and_their_report(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    results = tmp_path / "results.jsonl"
    args = ["physics", "env", "--task", TASK, "--num-envs", "8", "--duration", "0.05", *TINY, str(results)]
    assert main(args) == 0
    records = read(results)
    physics = [record["config"] for record in records if record["benchmark"] == "physics"]
    engines = {(config["engine"], config["graph_capture"], config["threads"]) for config in physics}
    assert {("mujoco_warp", True, None), ("mujoco_warp", False, None), ("mujoco_c", None, 1)} <= engines
    assert all(config["num_envs"] == 8 and config["decimation"] == 2 for config in physics)
    (env,) = [record for record in records if record["benchmark"] == "env"]
    assert list(env["metrics"]) == [
        "env_steps_per_s", "vec_env_steps_per_s", "physics_control_steps_per_s", "overhead", "vec_env_overhead"
    ]  # fmt: skip
    summaries = [message for message in caplog.messages if message.startswith(("physics | ", "env | "))]
    assert len(summaries) == len(records)

    docs = tmp_path / "docs"
    assert main(["--report", "--results", str(results), "--docs", str(docs)]) == 0
    assert (docs / "performance" / f"throughput-{TASK}.png").stat().st_size > 0
    assert "MuJoCo-Warp, graph" in (docs / "performance.md").read_text()


@pytest.mark.slow
def test_train_scaling_and_sync_share_their_runs(tmp_path: Path) -> None:
    results, runs = tmp_path / "results.jsonl", tmp_path / "runs"
    result = run_bench(
        "train", "scaling", "sync", "--task", TASK, "--ranks", "2", "--train.num-envs", "16",
        "--train.iterations", "1", "--log-root", str(runs), *TINY, str(results),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read(results)
    assert [(record["benchmark"], record["config"]["ranks"]) for record in records] == [
        ("train", 1), ("scaling", 1), ("scaling", 2), ("sync", 1), ("sync", 2)
    ]  # fmt: skip
    runs_made = sorted(path.name.split("_", 2)[-1] for path in (runs / "cartpole_balance").iterdir())
    # one run per rank count, and two independent single-rank runs at once, all kept under --log-root
    assert runs_made == ["bench-1-ranks-0", "bench-2-ranks-0", "bench-independent-2-0-0", "bench-independent-2-1-0"]
    train, _, two_ranks, sync_one, sync_two = records
    assert list(train["metrics"]) == ["env_steps_per_s", "collect_s", "learn_s", "iteration_s"]
    assert list(two_ranks["metrics"]) == [
        "env_steps_per_s", "env_steps_per_s_per_rank", "speedup", "efficiency", "independent_speedup",
        "share_of_independent",
    ]  # fmt: skip
    assert list(records[1]["metrics"]) == ["env_steps_per_s", "env_steps_per_s_per_rank", "speedup", "efficiency"]
    assert two_ranks["config"]["torch_threads"] == 1 and two_ranks["config"]["num_envs"] == 16
    assert sync_one["metrics"]["sync_s"]["median"] == 0 and sync_one["config"]["gradient_all_reduces_per_update"] == 0
    assert sync_two["metrics"]["sync_s"]["median"] > 0 and sync_two["config"]["gradient_all_reduces_per_update"] == 20
    assert result.stderr.count("train | ") + result.stderr.count("scaling | ") + result.stderr.count("sync | ") == 5


@pytest.mark.slow
def test_launch_with_a_warm_cache_and_the_bare_launcher(tmp_path: Path) -> None:
    import warp as wp

    wp.init()
    warm = Path(wp.config.kernel_cache_dir).parent  # WARP_CACHE_PATH holds Warp's version directory
    results = tmp_path / "results.jsonl"
    result = run_bench(
        "launch", "--task", TASK, "--ranks", "2", "--launch.caches", "warm", "--launch.warm-cache", str(warm),
        "--launch.num-envs", "16", "--log-root", str(tmp_path / "runs"), *TINY, str(results),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    configs = [
        (r["config"]["measure"], r["config"]["ranks"], r["config"]["cache"], *r["metrics"]) for r in read(results)
    ]
    assert configs == [
        ("train_first_iteration", 1, "warm", "first_iteration_s"),
        ("train_first_iteration", 2, "warm", "first_iteration_s"),
        ("torchrunx_noop", 2, None, "launch_s"),
    ]


def test_launch_gives_each_cold_run_a_new_cache_and_warm_runs_a_filled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache directories and commands of the launch benchmark, with the `train` runs faked (a real cold run
    compiles for ~30 s; the real subprocess path is covered by the warm test above)."""
    runs: list[tuple[list[str], str]] = []

    def fake_run(command: list[str], env: dict[str, str]) -> float:
        runs.append((command, env["WARP_CACHE_PATH"]))
        assert Path(env["WARP_CACHE_PATH"]).is_dir()
        return 1.0

    monkeypatch.setattr(launch_time, "time_to_first_iteration", fake_run)
    monkeypatch.setattr(launch_time, "bare_launch_s", lambda *args: 2.0)
    results = tmp_path / "results.jsonl"
    cfg = BenchConfig(ranks=2, repetitions=2, results=results, launch=LaunchConfig(caches=("cold", "warm")))
    spec = registered_tasks()[TASK]
    launch_time.run_launch(spec, cfg, CPU, tmp_path / "runs", Recorder(results, TASK, provenance()))

    ranks = [("--cpu-workers" in command) + 1 for command, _ in runs]
    assert ranks == [1, 1, 1, 1, 2, 2, 2, 2]
    caches = [cache for _, cache in runs]
    assert len(set(caches[0:2] + caches[4:6])) == 4  # every cold run: a new cache
    assert caches[2:4] == [caches[1]] * 2 and caches[6:8] == [caches[5]] * 2  # warm: the last cold run's cache
    assert not Path(caches[0]).exists()  # temporary caches are removed afterwards
    assert all("--agent.max-iterations" in command and str(tmp_path / "runs") in command for command, _ in runs)
    assert [(r["config"]["ranks"], r["config"]["cache"]) for r in read(results, repetitions=2)] == [
        (1, "cold"), (1, "warm"), (2, "cold"), (2, "warm"), (2, None)
    ]  # fmt: skip

    runs.clear()
    warm_only = dataclasses.replace(cfg, ranks=1, repetitions=1, launch=LaunchConfig(caches=("warm",)))
    launch_time.run_launch(
        spec,
        warm_only,
        CPU,
        tmp_path / "runs",
        Recorder(results, TASK, provenance()),
    )
    assert len(runs) == 2 and runs[0][1] == runs[1][1]  # one unmeasured run fills the cache, then the measured one


def synthetic_records() -> list[dict[str, Any]]:
    """One record of every benchmark (a GPU one among them), as `bench` would write them."""
    cpu = Provenance(
        machine={"hostname": "box", "cpu_model": "Test CPU", "cpu_count": 2, "memory_gib": 8.0, "gpu_model": None},
        versions={"python": "3.11.0", **dict.fromkeys(DISTRIBUTIONS, "1.0")},
        git_commit="0" * 40,
        git_dirty=False,
    )
    gpu = Provenance({**cpu.machine, "gpu_model": "Test GPU 80GB"}, cpu.versions, None, None)
    train = {"ranks": 1, "num_envs": 512, "num_steps_per_env": 32, "iterations": 10, "torch_threads": None}
    records = []
    for where, device in ((cpu, "cpu"), (gpu, "cuda:0")):
        for num_envs in (64, 256):
            warp = {"engine": "mujoco_warp", "device": device, "graph_capture": True, "threads": None}
            rates = {"physics_steps_per_s": [2e5], "control_steps_per_s": [1e5]}
            records.append(make_record("physics", TASK, where, {**warp, "num_envs": num_envs}, rates))
            env = {"env_steps_per_s": [8e4], "vec_env_steps_per_s": [7e4], "physics_control_steps_per_s": [1e5],
                   "overhead": [0.2], "vec_env_overhead": [0.3]}  # fmt: skip
            records.append(make_record("env", TASK, where, {"device": device, "num_envs": num_envs}, env))
    mujoco_c = {"engine": "mujoco_c", "device": "cpu", "graph_capture": None, "threads": 2, "num_envs": 64}
    records.append(
        make_record("physics", TASK, cpu, mujoco_c, {"physics_steps_per_s": [6e5], "control_steps_per_s": [3e5]})
    )
    seconds = {"env_steps_per_s": [3e4], "collect_s": [0.4], "learn_s": [0.1], "iteration_s": [0.5]}
    records.append(make_record("train", TASK, cpu, {"device": "cpu", **train}, seconds))
    for ranks in (1, 2):
        config = {"device": "cpu", **train, "ranks": ranks}
        scaling = {"env_steps_per_s": [3e4 * ranks], "env_steps_per_s_per_rank": [3e4], "speedup": [ranks],
                   "efficiency": [0.95]}  # fmt: skip
        if ranks > 1:
            scaling |= {"independent_speedup": [1.5], "share_of_independent": [0.9]}
        records.append(make_record("scaling", TASK, cpu, config, scaling))
        sync = {"sync_s": [0.01 * (ranks - 1)], "learn_s": [0.1], "sync_share": [0.1 * (ranks - 1)]}
        records.append(make_record("sync", TASK, cpu, {**config, "gradient_all_reduces_per_update": 20}, sync))
        for cache in ("cold", "warm"):
            launch = {"measure": "train_first_iteration", "device": "cpu", "ranks": ranks, "cache": cache,
                      "num_envs": 512}  # fmt: skip
            records.append(make_record("launch", TASK, cpu, launch, {"first_iteration_s": [10.0 * ranks]}))
    noop = {"measure": "torchrunx_noop", "device": "cpu", "ranks": 2, "cache": None, "num_envs": None}
    records.append(make_record("launch", TASK, cpu, noop, {"launch_s": [3.0]}))
    return records


def test_report_renders_every_benchmark_from_a_results_file(tmp_path: Path) -> None:
    results, docs = tmp_path / "results.jsonl", tmp_path / "docs"
    for record in synthetic_records():
        append_record(results, record)
    assert main(["--report", "--results", str(results), "--docs", str(docs)]) == 0
    report = (docs / "performance.md").read_text()
    for title in ("## Physics", "## Environment step", "## Training", "## Scaling", "## Launch", "## Gradient"):
        assert title in report, title
    assert "records in the results file" not in report  # every benchmark has rows
    assert "uv run bench --report" in report
    assert "| GPU: Test GPU 80GB |" in report and "| CPU |" in report
    assert "+10.00 s" in report and "2.00x" in report  # 2 ranks - 1 rank (warm), cold 2 / cold 1
    assert "| 1.5 | 90.0% |" in report and "| n/a | n/a |" in report  # independent runs: 2 ranks only
    plots = sorted(path.name for path in (docs / "performance").iterdir())
    assert plots == ["scaling.png", f"throughput-{TASK}.png"]
    assert all(f"(performance/{plot})" in report for plot in plots)


def test_report_takes_the_latest_record_of_a_configuration(tmp_path: Path) -> None:
    results, docs = tmp_path / "results.jsonl", tmp_path / "docs"
    train = next(record for record in synthetic_records() if record["benchmark"] == "train")
    append_record(results, train)
    append_record(results, {**train, "metrics": {**train["metrics"], "env_steps_per_s": {
        "median": 12345.0, "min": 12345.0, "max": 12345.0, "values": [12345.0]}}})  # fmt: skip
    assert main(["--report", "--results", str(results), "--docs", str(docs)]) == 0
    rows = [line for line in (docs / "performance.md").read_text().splitlines() if line.startswith(f"| {TASK}")]
    assert len(rows) == 1 and "12,345" in rows[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["phyiscs"], "unknown benchmark 'phyiscs'; choose from physics, env, train, scaling, launch, sync"),
        (["--task", "cartpole-balanse"], "unknown task 'cartpole-balanse'; known tasks: "),
        (["physics", "--num-envs", "64", "0"], "--num-envs must be at least 1, got 0"),
        (["--repetitions", "0"], "--repetitions must be at least 1, got 0"),
        (["--ranks", "0"], "--ranks must be at least 1, got 0"),
        (["--train.iterations", "0"], "--train.iterations must be at least 1, got 0"),
        (["--duration", "0"], "--duration must be a positive number of seconds, got 0.0"),
        (["--report", "env"], "--report measures nothing; drop the benchmark names (env)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "out" / "results.jsonl"
    assert main([*args, "--results", str(results), "--docs", str(tmp_path / "docs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench: error: {message}") and "\n" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "docs").exists()


def test_cuda_without_a_gpu_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["physics", "--device", "cuda", "--results", str(tmp_path / "results.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: --device cuda with --ranks 1: ") and "needs a GPU" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_independent_runs_on_gpus_take_one_gpu_each(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = BenchDevices("cuda", Machine("4,6", 2, 8))
    assert gpus.selection(2).physical_gpus == ("4", "6")
    assert [gpus.selection(1, first_gpu=index).physical_gpus for index in (0, 1)] == [("4",), ("6",)]
    assert BenchDevices("cpu", Machine("4,6", 2, 8)).selection(1, first_gpu=1).kind == "cpu"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read results file"),
        ("", "holds no records; run `bench` first"),
        ('{"schema": 1}\n', ":1 is not a bench record: it lacks benchmark, task"),
        ("not json\n", ":1 is not JSON"),
    ],
)
def test_report_refuses_an_unreadable_results_file(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, docs = tmp_path / "results.jsonl", tmp_path / "docs"
    if content is not None:
        results.write_text(content)
    assert main(["--report", "--results", str(results), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and message in err and "\n" not in err
    assert not docs.exists()
