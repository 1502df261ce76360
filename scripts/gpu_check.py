"""``scripts/gpu-check``: one command that checks a GPU machine end to end and prints one JSON summary.

Repository tooling, not part of the package: it runs this checkout's GPU tests, and the ``train``, ``play`` and
``bench`` commands installed next to ``--python`` (default: the interpreter running this script). Standard
library only, so that it runs on a node's own Python.

Steps (each a real command with its own time limit, output to a log file in the work directory):

- ``bench-<task>``: ``bench physics env train`` at 1024, 4096 and 8192 envs, recorded into
  ``bench-results/results.jsonl`` like any bench run, with nothing else on their GPU;
- ``train-quadruped``: quadruped training in the background (interrupted at its time limit, as Ctrl-C would),
  its last reward; on the last GPU, started after the benchmarks when there is only one GPU;
- ``sync-free-step``: the GPU-only tests (CUDA sync debug mode over env steps; an env on cuda:1 while cuda:0
  is current; the bench's event pool; the env holds a captured graph);
- ``train-cartpole``: ``train cartpole-balance --gpu-ids 0`` to a balancing policy: time, env-steps/s, reward;
- ``play-cartpole``: ``play --video --json`` of its checkpoint on GPU 0 (EGL): the mean length of 64 episodes
  (500 is the maximum) and the frame count of the mp4; ``play-video-fallback``: a clip with EGL made to fail,
  so that OSMesa renders;
- ``contexts-cpu-workers``, ``contexts-one-gpu``: which GPUs hold a CUDA context of the training processes
  (``nvidia-smi --query-compute-apps``) during a CPU-worker run and a one-GPU run;
- ``train-2-gpus``, ``train-all-gpus``: ``--gpu-ids 0 1`` and ``all`` when there are 2 or more GPUs, after the
  background training has stopped.

``--quick`` checks less in under 5 minutes: ``bench env`` at 4096 envs for both tasks, the sync-free step,
cart-pole to balance, ``play --video`` with EGL and with its fallback. ``--dry-run`` prints the plan (every command)
for ``--gpus N`` without running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpu_check_outputs import Outcome, context_gpus, play_metrics, summarize, training_metrics

REPO = Path(__file__).resolve().parents[1]
QUADRUPED_TRAIN_S = 180
STOP_GRACE_S = 30
"""Seconds a process has to exit after SIGINT before it (and its process group) is killed."""
BUDGET_S = {"one-gpu": 470, "multi-gpu": 600, "quick": 290}
"""The longest each plan may take, every step using its whole time limit: ``plan_budget_s`` of its plan stays
within this (one GPU: under 8 minutes; --quick: under 5)."""
BENCH_ENVS = ("1024", "4096", "8192")
BENCH_TASKS = ("cartpole-balance", "velocity-flat-quadruped")
NO_GPU = "no GPU is visible to torch under this CUDA_VISIBLE_DEVICES (or torch has no CUDA)"
GPU_QUERY = (
    "import json, torch; print(json.dumps([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]))"
)
"""Prints the names of the GPUs torch sees: CUDA_VISIBLE_DEVICES and MIG respected, as --gpu-ids indexes them."""
FRAME_COUNT = "import sys, imageio_ffmpeg; print(imageio_ffmpeg.count_frames_and_secs(sys.argv[1])[0])"
EGL_FAILS = {"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent/egl_vendor.json"}
"""libglvnd then finds no EGL vendor library, so the EGL probe fails and rendering falls back to OSMesa."""

log = logging.getLogger("gpu-check")


@dataclass(frozen=True)
class Step:
    """One command of the check."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float
    background: bool = False
    """Started where it stands in the plan and left running alongside the following steps; stopped with SIGINT
    at its time limit (or when an exclusive step or the end of the plan waits for it)."""
    exclusive: bool = False
    """Needs the machine to itself: a background step still running is waited for (until its time limit)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables."""
    watch_contexts: bool = False
    """Poll nvidia-smi for the CUDA contexts of this command's processes while it runs."""
    gpus: tuple[int, ...] = ()
    """The GPUs it uses (visible indices)."""


def plan(gpus: int, work: Path, results: Path, python: Path, quick: bool = False) -> list[Step]:
    """The steps for a machine with ``gpus`` visible GPUs, commands from ``python``'s directory; runs and videos go
    under ``work``; bench rows into ``results``."""
    train, play, bench = (str(python.parent / name) for name in ("train", "play", "bench"))
    runs = ("--log-root", str(work / "runs"))
    tiny = ("--agent.logger", "none", *runs)
    one_gpu = gpus == 1

    def bench_step(task: str, benchmarks: tuple[str, ...], envs: tuple[str, ...], timeout_s: float) -> Step:
        argv = (bench, *benchmarks, "--task", task, "--device", "cuda", "--ranks", "1", "--num-envs", *envs,
                "--physics.no-rollout", "--repetitions", "1", "--duration", "1", "--results", str(results))  # fmt: skip
        return Step(f"bench-{task}", argv, timeout_s, exclusive=one_gpu, gpus=(0,))

    def play_step(name: str, timeout_s: float, *flags: str, env: dict[str, str] | None = None) -> Step:
        argv = (play, "cartpole-balance", "--gpu-ids", "0", "--json", *flags, *runs)
        return Step(name, argv, timeout_s, env=env or {}, gpus=(0,))

    video = ("--video", "--video-length", "100")
    cartpole = Step("train-cartpole", (train, "cartpole-balance", "--gpu-ids", "0", "--env.num-envs", "4096", *tiny,
                                       "--run-name", "cartpole"), 75 if quick else 80, gpus=(0,))  # fmt: skip
    tests = ("tests/test_sync_free_step.py", "tests/test_gpu.py")
    sync_free = Step("sync-free-step", (str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                                        *tests), 55, gpus=(0,))  # fmt: skip
    evaluate = ("--num-envs", "64", "--num-episodes", "64")
    fallback = play_step("play-video-fallback", 40, *video, "--num-steps", "1", env=EGL_FAILS)
    if quick:
        return [  # the shorter check: nothing in the background
            bench_step("cartpole-balance", ("env",), ("4096",), 35),
            bench_step("velocity-flat-quadruped", ("env",), ("4096",), 45),
            sync_free,
            cartpole,
            play_step("play-cartpole", 40, *video, *evaluate),
            fallback,
        ]
    last = gpus - 1
    quadruped = Step("train-quadruped", (train, "velocity-flat-quadruped", "--gpu-ids", str(last),
                                         "--agent.max-iterations", "100000", *tiny, "--run-name", "quadruped"),
                     QUADRUPED_TRAIN_S, background=True, gpus=(last,))  # fmt: skip
    benches = [bench_step(BENCH_TASKS[0], ("physics", "env", "train"), BENCH_ENVS, 75),
               bench_step(BENCH_TASKS[1], ("physics", "env", "train"), BENCH_ENVS, 95)]  # fmt: skip
    short = ("--agent.max-iterations", "30", "--env.num-envs", "256", *tiny)
    checks = [
        sync_free,
        cartpole,
        play_step("play-cartpole", 45, *video, *evaluate),
        fallback,
        Step(
            "contexts-cpu-workers",
            (train, "cartpole-balance", "--gpu-ids", "None", "--cpu-workers", "2", *short, "--run-name", "cpu-workers"),
            40,
            watch_contexts=True,
        ),
        Step(
            "contexts-one-gpu",
            (train, "cartpole-balance", "--gpu-ids", "0", *short, "--run-name", "one-gpu"),
            35,
            watch_contexts=True,
            gpus=(0,),
        ),
    ]
    if one_gpu:  # the benchmarks alone on the GPU first; the quadruped then trains alongside the checks
        return [*benches, quadruped, *checks]
    several = [
        Step(
            f"train-{name}",
            (train, "cartpole-balance", "--gpu-ids", *ids, "--agent.max-iterations", "20", *tiny, "--run-name", name),
            45,
            exclusive=True,
            gpus=tuple(range(n)),
        )
        for name, ids, n in (("2-gpus", ("0", "1"), 2), ("all-gpus", ("all",), gpus))
    ]
    return [quadruped, *benches, *checks, *several]


def plan_budget_s(steps: list[Step]) -> float:
    """Seconds the plan takes at most when every step uses its whole time limit (the background step also its SIGINT
    grace; a step that overruns its limit fails the check), as ``run_plan`` runs them."""
    now, background_end = 0.0, None
    for step in steps:
        if step.background:
            background_end = now + step.timeout_s + STOP_GRACE_S
        elif step.exclusive and background_end is not None:
            now, background_end = max(now, background_end), None
        if not step.background:
            now += step.timeout_s
    return max(now, background_end or 0.0)


@dataclass
class Running:
    """A started step: its process and log file."""

    step: Step
    process: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.perf_counter)


class Runner:
    """Starts steps as processes (each in its own process group, output to a file), and stops every one it
    started."""

    def __init__(self, work: Path, python: Path, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.stop_grace_s = stop_grace_s
        self.started: list[subprocess.Popen] = []

    def start(self, step: Step) -> Running:
        log_path = self.logs / f"{step.name}.log"
        with log_path.open("wb") as output:
            process = subprocess.Popen(step.argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **step.env}, cwd=REPO, start_new_session=True)  # fmt: skip
        self.started.append(process)
        return Running(step, process, log_path)

    def finish(self, running: Running, alongside: str | None = None) -> Outcome:
        """Wait for ``running`` until it ends or its time is up (then SIGINT, and SIGKILL after the grace)."""
        step, process = running.step, running.process
        deadline = running.started + step.timeout_s
        contexts: set[str] = set()
        while process.poll() is None and time.perf_counter() < deadline:
            try:
                process.wait(timeout=min(2.0, max(deadline - time.perf_counter(), 0.01)))
            except subprocess.TimeoutExpired:
                if step.watch_contexts:
                    contexts |= _contexts_of(process.pid)
        if process.poll() is None:
            self.stop(process)
        output = running.log_path.read_text(errors="replace")
        outcome = Outcome(step.name, process.returncode, time.perf_counter() - running.started, alongside=alongside)
        outcome.metrics = training_metrics(output) or play_metrics(output)
        if step.watch_contexts:
            outcome.metrics["gpus_with_contexts"] = sorted(contexts)
        if "--video" in step.argv:
            outcome.metrics["frames"] = self.frames(outcome.metrics.get("video"))
            outcome.metrics["renderer"] = "osmesa" if "Rendering with OSMesa" in output else "egl"
        if not outcome.ok():
            outcome.tail = "\n".join(output.splitlines()[-15:])
        return outcome

    def stop(self, process: subprocess.Popen) -> None:
        """SIGINT, as Ctrl-C would (training saves its checkpoint); its process group is killed if it has not
        exited after the grace."""
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop %g s after SIGINT; killing its process group", process.pid,
                        self.stop_grace_s)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        """Stop and reap every process this runner started, and kill what is left of its process group (workers
        of a launcher that did not stop them)."""
        for process in self.started:
            self.stop(process)
            if _group_members(process.pid):
                log.warning("killing what is left of %s's process group", process.args[0])
                with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                    os.killpg(process.pid, signal.SIGKILL)

    def frames(self, video: str | None) -> int | None:
        """Frames in the mp4 ``video`` (decoded with imageio-ffmpeg's ffmpeg), or None without one."""
        if not video or not Path(video).exists():
            return None
        counted = subprocess.run([str(self.python), "-c", FRAME_COUNT, video], capture_output=True, text=True,
                                 timeout=120)  # fmt: skip
        return int(counted.stdout) if counted.returncode == 0 else None


def run_plan(steps: list[Step], runner: Runner) -> list[Outcome]:
    """Run ``steps`` in order, a background step alongside those after it; every process is stopped and reaped
    when the plan ends, however it ends."""
    outcomes: list[Outcome] = []
    background: Running | None = None
    try:
        for number, step in enumerate(steps, 1):
            if step.exclusive and background is not None:
                log.info("waiting for %s to end before %s", background.step.name, step.name)
                outcomes.append(runner.finish(background))
                background = None
            log.info("[%d/%d] %s (at most %d s)", number, len(steps), step.name, step.timeout_s)
            running = runner.start(step)
            if step.background:
                background = running
                continue
            outcome = runner.finish(running, alongside=background.step.name if background else None)
            log.info("[%d/%d] %s: %s in %.0f s", number, len(steps), step.name, "ok" if outcome.ok() else "FAILED",
                     outcome.wall_s)  # fmt: skip
            outcomes.append(outcome)
        if background is not None:
            outcomes.append(runner.finish(background))
    finally:
        runner.stop_all()
    return outcomes


def visible_gpus(python: Path) -> list[str]:
    """Names of the GPUs torch under ``python`` sees (CUDA_VISIBLE_DEVICES and MIG respected)."""
    query = subprocess.run([str(python), "-c", GPU_QUERY], capture_output=True, text=True, timeout=300)
    lines = query.stdout.strip().splitlines()
    return json.loads(lines[-1]) if query.returncode == 0 and lines else []


def _contexts_of(pid: int) -> set[str]:
    try:
        query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return set()
    return context_gpus(query.stdout, _descendants(pid))


def _group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (from /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


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


def _fail(message: str) -> int:
    print(f"gpu-check: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON and run nothing")
    parser.add_argument("--gpus", type=int, help="plan for this many GPUs (default: the ones torch sees)")
    parser.add_argument("--quick", action="store_true", help="the shorter check (under 5 minutes)")
    parser.add_argument("--results", type=Path, default=Path("bench-results/results.jsonl"))
    parser.add_argument("--python", type=Path, default=Path(sys.executable),
                        help="interpreter with mjdist installed; train, play and bench are taken from its directory "
                             "(default: the one running gpu-check)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gpu-check: %(message)s", stream=sys.stderr)
    python = Path(os.path.abspath(args.python))  # not resolved: a venv's python is a link out of the venv
    missing = [name for name in ("train", "play", "bench") if not (python.parent / name).exists()]
    if not python.exists() or missing:
        return _fail(f"--python {args.python}: no {' '.join(missing) or 'interpreter'} there; name the python of a "
                     f"venv with mjdist installed (scripts/install-offline makes one)")  # fmt: skip
    if args.gpus is not None and args.gpus < 1:
        return _fail(f"--gpus must be at least 1, got {args.gpus}")
    if args.dry_run and args.gpus is not None:
        gpus: list[str] = []
    else:
        log.info("asking torch under %s which GPUs it sees", python)
        gpus = visible_gpus(python)
    count = args.gpus if args.gpus is not None else len(gpus)
    if count < 1:
        return _fail(NO_GPU)
    results = Path(os.path.abspath(args.results))
    work = Path(tempfile.mkdtemp(prefix="gpu-check-")) if not args.dry_run else Path("<work>")
    steps = plan(count, work, results, python, args.quick)
    if args.dry_run:
        print(json.dumps({"gpus": count, "budget_s": plan_budget_s(steps), "steps": [asdict(s) for s in steps]}))
        return 0
    log.info("%d steps, at most %.0f s; logs in %s", len(steps), plan_budget_s(steps), work / "logs")
    try:
        outcomes = run_plan(steps, Runner(work, python))
    except KeyboardInterrupt:
        log.error("interrupted: every process it started is stopped; logs in %s", work / "logs")
        return 130
    summary = summarize(outcomes, gpus)
    results.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    (results.parent / f"gpu-check-{stamp}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
