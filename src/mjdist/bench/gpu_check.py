"""``scripts/gpu-check``: one command that checks a GPU machine end to end and prints one JSON summary.

Steps (each a real command, run as a subprocess with its own time limit; the whole under 8 minutes):

- ``sync-free-step``: the GPU-only tests (CUDA sync debug mode over env steps; an env on cuda:1 while cuda:0
  is current; the bench's event pool);
- ``train-cartpole``: ``train cartpole-balance --gpu-ids 0`` to a balancing policy: time, env-steps/s, reward,
  then ``play --json`` of its checkpoint (mean episode length; 500 is the maximum);
- ``play-video``: ``play --video`` on GPU 0, with the frame count of the mp4;
- ``bench-<task>``: ``bench physics env train`` at 1024, 4096 and 8192 envs, recorded into
  ``bench-results/results.jsonl`` like any bench run, so that ``bench --report`` shows GPU rows;
- ``train-quadruped``: 5 minutes of quadruped training (interrupted, as Ctrl-C would), its last reward; it runs
  on the last GPU alongside the other steps (alone on it when there are 2 or more GPUs);
- ``train-2-gpus``, ``train-all-gpus``: ``--gpu-ids 0 1`` and ``all`` when there are 2 or more GPUs;
- ``contexts-cpu-workers``, ``contexts-one-gpu``: which GPUs hold a CUDA context of the training processes
  (``nvidia-smi --query-compute-apps``) during a CPU-worker run and a one-GPU run.

``--dry-run`` prints the plan (every command) for ``--gpus N`` without running anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUADRUPED_TRAIN_S = 300
BENCH_ENVS = ("1024", "4096", "8192")
BENCH_TASKS = ("cartpole-balance", "velocity-flat-quadruped")
NO_GPU = "no GPU is visible (nvidia-smi -L lists none, or there is no nvidia-smi)"
PROGRESS = re.compile(r"iter +(\d+)/\d+ \| +([\d,]+) env-steps/s .*\| reward +(\S+) \| ep len +(\S+)")


@dataclass(frozen=True)
class Step:
    """One command of the check."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float
    background: bool = False
    """Started first and left running while the others run (the 5-minute training); stopped with SIGINT."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables."""
    watch_contexts: bool = False
    """Poll nvidia-smi for the CUDA contexts of this command's processes while it runs."""


def plan(gpus: int, work: Path, results: Path) -> list[Step]:
    """The steps for a machine with ``gpus`` visible GPUs; runs and videos go under ``work``."""
    bin_dir = Path(sys.executable).parent
    train, play, bench = (str(bin_dir / name) for name in ("train", "play", "bench"))
    tiny = ("--agent.logger", "none", "--log-root", str(work / "runs"))
    last_gpu = str(gpus - 1)
    steps = [
        Step(
            "train-quadruped",
            (
                train,
                "velocity-flat-quadruped",
                "--gpu-ids",
                last_gpu,
                "--agent.max-iterations",
                "100000",
                *tiny,
                "--run-name",
                "quadruped",
            ),
            QUADRUPED_TRAIN_S,
            background=True,
        ),
        Step(
            "sync-free-step",
            (sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_sync_free_step.py", "tests/test_gpu.py"),
            180,
        ),
        Step(
            "train-cartpole",
            (train, "cartpole-balance", "--gpu-ids", "0", "--env.num-envs", "4096", *tiny, "--run-name", "cartpole"),
            240,
        ),
        Step(
            "play-cartpole",
            (
                play,
                "cartpole-balance",
                "--gpu-ids",
                "0",
                "--json",
                "--num-envs",
                "64",
                "--num-episodes",
                "64",
                "--log-root",
                str(work / "runs"),
            ),
            120,
        ),
        Step(
            "play-video",
            (
                play,
                "cartpole-balance",
                "--gpu-ids",
                "0",
                "--json",
                "--video",
                "--video-length",
                "100",
                "--num-steps",
                "1",
                "--log-root",
                str(work / "runs"),
            ),
            120,
        ),
    ]
    steps += [
        Step(
            f"bench-{task}",
            (
                bench,
                "physics",
                "env",
                "train",
                "--task",
                task,
                "--device",
                "cuda",
                "--num-envs",
                *BENCH_ENVS,
                "--repetitions",
                "1",
                "--duration",
                "1",
                "--results",
                str(results),
            ),
            240,
        )
        for task in BENCH_TASKS
    ]
    if gpus >= 2:
        steps += [
            Step(
                f"train-{name}",
                (
                    train,
                    "cartpole-balance",
                    "--gpu-ids",
                    *ids,
                    "--agent.max-iterations",
                    "20",
                    *tiny,
                    "--run-name",
                    name,
                ),
                180,
            )
            for name, ids in (("2-gpus", ("0", "1")), ("all-gpus", ("all",)))
        ]
    short = ("--agent.max-iterations", "30", "--env.num-envs", "256", *tiny)
    steps += [
        Step(
            "contexts-cpu-workers",
            (train, "cartpole-balance", "--gpu-ids", "None", "--cpu-workers", "2", *short, "--run-name", "cpu-workers"),
            180,
            watch_contexts=True,
        ),
        Step(
            "contexts-one-gpu",
            (train, "cartpole-balance", "--gpu-ids", "0", *short, "--run-name", "one-gpu"),
            180,
            watch_contexts=True,
        ),
    ]
    return steps


@dataclass
class Outcome:
    """What one step did."""

    name: str
    returncode: int | None
    wall_s: float
    metrics: dict = field(default_factory=dict)
    tail: str = ""
    """The last lines of its output when it failed."""

    def ok(self) -> bool:
        # a background training stopped by SIGINT saves its checkpoint and exits with 130
        return self.returncode == 0 or (self.name == "train-quadruped" and self.returncode == 130)


def training_metrics(output: str) -> dict:
    """The last progress line of ``train``: iterations, env-steps/s, mean reward and episode length."""
    matches = PROGRESS.findall(output)
    if not matches:
        return {}
    iteration, rate, reward, length = matches[-1]
    return {
        "iterations": int(iteration),
        "env_steps_per_s": float(rate.replace(",", "")),
        "mean_reward": None if reward == "n/a" else float(reward),
        "mean_episode_length": None if length == "n/a" else float(length),
    }


def play_metrics(output: str) -> dict:
    """``play --json``'s summary (its last stdout line)."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def context_gpus(query_output: str, pids: set[int]) -> set[str]:
    """GPU UUIDs on which any of ``pids`` holds a CUDA context, from ``nvidia-smi --query-compute-apps=pid,gpu_uuid
    --format=csv,noheader``."""
    gpus = set()
    for line in query_output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in pids:
            gpus.add(parts[1])
    return gpus


def summarize(outcomes: list[Outcome], gpus: list[str]) -> dict:
    """The one JSON summary: the GPUs, every step's outcome and metrics, and whether all passed."""
    steps = {o.name: {"ok": o.ok(), "returncode": o.returncode, "wall_s": round(o.wall_s, 1), **o.metrics,
                      **({"tail": o.tail} if not o.ok() else {})} for o in outcomes}  # fmt: skip
    cartpole = steps.get("play-cartpole", {})
    return {
        "gpus": gpus,
        "ok": all(o.ok() for o in outcomes),
        "cartpole_balances": bool(cartpole.get("mean_episode_length", 0) >= 450),
        "steps": steps,
    }


def _descendants(pid: int) -> set[int]:
    found, frontier = {pid}, [pid]
    while frontier:
        children = Path(f"/proc/{frontier.pop()}/task")
        for task in children.glob("*/children") if children.exists() else ():
            for child in task.read_text().split():
                if int(child) not in found:
                    found.add(int(child))
                    frontier.append(int(child))
    return found


def _run(step: Step, process: subprocess.Popen[str] | None = None, started: float | None = None) -> Outcome:
    """Run ``step`` (or wait for its started ``process``) until it ends or its time is up (then SIGINT)."""
    start = time.perf_counter() if started is None else started
    env = {**os.environ, **step.env}
    process = process or subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=env)  # fmt: skip
    contexts: set[str] = set()
    output = ""
    deadline = start + step.timeout_s
    while True:
        try:
            output, _ = process.communicate(
                timeout=2 if step.watch_contexts else max(deadline - time.perf_counter(), 1)
            )
            break
        except subprocess.TimeoutExpired:
            if step.watch_contexts:
                query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
                                       capture_output=True, text=True)  # fmt: skip
                contexts |= context_gpus(query.stdout, _descendants(process.pid))
            if time.perf_counter() > deadline:
                process.send_signal(signal.SIGINT)
                output, _ = process.communicate(timeout=120)
                break
    outcome = Outcome(step.name, process.returncode, time.perf_counter() - start)
    outcome.metrics = training_metrics(output) or play_metrics(output)
    if step.watch_contexts:
        outcome.metrics["gpus_with_contexts"] = sorted(contexts)
    if step.name == "play-video":
        outcome.metrics["frames"] = _frames(work_videos(step))
    if not outcome.ok():
        outcome.tail = "\n".join(output.splitlines()[-15:])
    return outcome


def work_videos(step: Step) -> Path:
    root = Path(step.argv[step.argv.index("--log-root") + 1])
    videos = sorted(root.rglob("videos/play/*.mp4"), key=lambda path: path.stat().st_mtime)
    return videos[-1] if videos else root / "missing.mp4"


def _frames(video: Path) -> int | None:
    if not video.exists():
        return None
    import imageio.v3 as iio

    return int(iio.improps(video, plugin="pyav").shape[0])


def _visible_gpus() -> list[str]:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    except FileNotFoundError:  # no NVIDIA driver
        return []
    return [line.strip() for line in listing.stdout.splitlines() if line.startswith("GPU")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON and run nothing")
    parser.add_argument("--gpus", type=int, help="plan for this many GPUs (default: the visible ones)")
    parser.add_argument("--results", type=Path, default=Path("bench-results/results.jsonl"))
    args = parser.parse_args(argv)
    gpus = [] if args.dry_run and args.gpus is not None else _visible_gpus()
    count = args.gpus if args.gpus is not None else len(gpus)
    if count < 1:
        print(f"gpu-check: error: {NO_GPU}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-")) if not args.dry_run else Path("<work>")
    steps = plan(count, work, args.results)
    if args.dry_run:
        print(json.dumps({"gpus": count, "steps": [asdict(step) for step in steps]}))
        return 0
    background = [(step, time.perf_counter(), subprocess.Popen(step.argv, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, text=True)) for step in steps if step.background]  # fmt: skip
    outcomes = [_run(step) for step in steps if not step.background]
    outcomes += [_run(step, process, started) for step, started, process in background]
    summary = summarize(outcomes, gpus)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    (args.results.parent / f"gpu-check-{stamp}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
