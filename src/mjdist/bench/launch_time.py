"""The launch benchmark: how long the real `train` command takes until its first iteration is done.

Each measurement starts the installed ``train`` console script as a subprocess (the same Python environment as
``bench``) with ``--agent.max-iterations 1`` and its own log root, and times from just before the process is
created to the moment its first progress line (``iter 1/1 ...``) arrives on stderr: interpreter start,
imports, planning, the launch of the ranks, building the environments (Warp kernels compiled or loaded),
the runner, and one PPO iteration. The process then finishes normally (checkpoint, export) untimed.

Cache states: ``cold`` gives every run a new, empty Warp kernel cache (WARP_CACHE_PATH), so every kernel is
compiled; ``warm`` reuses a cache a previous run filled. Python bytecode and the OS file cache are warm in
both.

The launcher's own overhead: a bare torchrunx launch, with the settings of a real N-rank launch (localhost,
N workers, the same backend and exported variables, no log files), of a function that does nothing. In
process, calling that function costs microseconds, so the launch time is the overhead itself.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from mjdist.bench.config import BenchConfig, CacheState
from mjdist.bench.devices import BenchDevices
from mjdist.bench.records import Recorder
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.plan import plan_ranks
from mjdist.tasks import TaskSpec

FIRST_ITERATION = re.compile(r"^iter\s+1/")
"""The progress line of the first iteration."""
TIMEOUT_S = 900.0
"""A `train` run that has not finished by then is killed and the benchmark fails."""
ERROR_TAIL_LINES = 20


class LaunchFailedError(RuntimeError):
    """A measured `train` run failed; the message holds the end of its output."""


def run_launch(spec: TaskSpec, cfg: BenchConfig, devices: BenchDevices, log_root: Path, record: Recorder) -> None:
    """Time to the first iteration per (rank count, cache state); then the bare torchrunx launch for N ranks."""
    num_envs = cfg.launch.num_envs or spec.env.num_envs
    with tempfile.TemporaryDirectory(prefix="mjdist-bench-warp-") as caches:
        timer = _FirstIteration(spec.name, devices, num_envs, log_root, Path(caches))
        for ranks in sorted({1, cfg.ranks}):
            for cache in cfg.launch.caches:
                seconds = [timer.measure(ranks, cache, cfg.launch.warm_cache) for _ in range(cfg.repetitions)]
                config = {"measure": "train_first_iteration", "device": devices.kind, "ranks": ranks,
                          "cache": cache, "num_envs": num_envs}  # fmt: skip
                record("launch", config, {"first_iteration_s": seconds})
    if cfg.ranks > 1:
        seconds = [bare_launch_s(spec, devices, cfg.ranks, log_root) for _ in range(cfg.repetitions)]
        config = {"measure": "torchrunx_noop", "device": devices.kind, "ranks": cfg.ranks, "cache": None,
                  "num_envs": None}  # fmt: skip
        record("launch", config, {"launch_s": seconds})


@dataclasses.dataclass
class _FirstIteration:
    """Runs of `train` for one task, with fresh or warm Warp caches under ``caches``."""

    task: str
    devices: BenchDevices
    num_envs: int
    log_root: Path
    caches: Path
    warm: Path | None = None
    """The warm cache this bench filled: the cache of its latest cold run, or of an unmeasured run."""
    runs: itertools.count = dataclasses.field(default_factory=itertools.count)
    """Numbers the runs' directories (runs of the same second must not share one)."""

    def measure(self, ranks: int, cache: CacheState, warm_cache: Path | None) -> float:
        """Seconds until the first progress line of one `train` run with ``ranks`` ranks."""
        if cache == "cold":
            self.warm = Path(tempfile.mkdtemp(prefix="cold-", dir=self.caches))
            return self.run(ranks, self.warm)
        if warm_cache is None and self.warm is None:
            self.warm = Path(tempfile.mkdtemp(prefix="warm-", dir=self.caches))
            self.run(1, self.warm)  # fills the cache, unmeasured
        return self.run(ranks, warm_cache or self.warm)

    def run(self, ranks: int, cache: Path) -> float:
        command = [
            str(train_script()), self.task, *self.devices.train_flags(ranks),
            "--env.num-envs", str(self.num_envs), "--agent.max-iterations", "1",
            "--log-root", str(self.log_root), "--run-name", f"bench-launch-{next(self.runs)}",
        ]  # fmt: skip
        return time_to_first_iteration(command, {**os.environ, "WARP_CACHE_PATH": str(cache)})


def train_script() -> Path:
    """The `train` console script installed next to this Python."""
    script = Path(sys.executable).with_name("train")
    if not script.exists():
        raise LaunchFailedError(f"the train console script is not installed next to {sys.executable}")
    return script


def time_to_first_iteration(command: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``command`` until its first progress line; the process must then exit with 0."""
    tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    first: float | None = None
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) as process:
        watchdog = threading.Timer(TIMEOUT_S, process.kill)
        watchdog.start()
        try:
            for line in process.stderr or ():
                if first is None and FIRST_ITERATION.match(line):
                    first = time.perf_counter() - start
                tail.append(line.rstrip())
            code = process.wait()
        finally:
            watchdog.cancel()
    if code != 0 or first is None:
        when = "without finishing an iteration" if first is None else "after its first iteration"
        raise LaunchFailedError(f"`{' '.join(command)}` ended with code {code} {when}: {' | '.join(tail)}")
    return first


def bare_launch_s(spec: TaskSpec, devices: BenchDevices, ranks: int, log_root: Path) -> float:
    """Seconds for torchrunx to start ``ranks`` workers that run :func:`mjdist.bench.noop.noop`, and end them."""
    import torchrunx

    from mjdist.bench.noop import noop
    from mjdist.launch.launcher import ENV_VARS_FOR_RANKS

    plan = plan_ranks(spec.name, devices.selection(ranks), (LOCALHOST,), 0, os.environ)
    visible = plan.rank_visible_devices
    launcher = torchrunx.Launcher(
        hostnames=["localhost"],
        workers_per_host=ranks,
        backend=plan.backend,  # type: ignore[arg-type]
        copy_env_vars=ENV_VARS_FOR_RANKS,
        extra_env_vars={"CUDA_VISIBLE_DEVICES": visible} if visible else None,
    ).set_logging_handlers(None)
    start = time.perf_counter()
    launcher.run(noop)
    return time.perf_counter() - start
