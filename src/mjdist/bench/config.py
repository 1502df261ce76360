"""The ``bench`` command's configuration (tyro turns the field docstrings into ``--help``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from mjdist.domains import NAME_MAX, check_fields
from mjdist.runs import check_writable

BENCHMARKS = ("physics", "env", "train", "scaling", "launch", "sync")
"""Every sub-benchmark, in the order a full ``bench`` runs them."""

CacheState = Literal["cold", "warm"]


@dataclass(frozen=True)
class PhysicsConfig:
    """The physics benchmark: bare MuJoCo-Warp, and MuJoCo C as the reference."""

    graph_capture: tuple[bool, ...] = (True, False)
    """MuJoCo-Warp with the control step replayed as a captured Warp graph (True), launched kernel by
    kernel (False), or both."""
    rollout: bool = True
    """Also step the model with MuJoCo C (mujoco.rollout) on 1 thread and on every usable core."""


@dataclass(frozen=True)
class TrainingConfig:
    """The PPO runs of the train, scaling and sync benchmarks (one run per repetition and rank count)."""

    num_envs: int | None = None
    """Environments per rank; None: the task's training default."""
    iterations: int = 10
    """Measured PPO iterations per run; each run does one more, the first, as an uncounted warm-up."""


@dataclass(frozen=True)
class LaunchConfig:
    """The launch benchmark: the real `train` command, timed until its first progress line."""

    caches: tuple[CacheState, ...] = ("cold", "warm")
    """Warp kernel cache states to measure: cold (a new, empty WARP_CACHE_PATH per run) and/or warm."""
    warm_cache: Path | None = None
    """WARP_CACHE_PATH of the warm runs, already filled: the directory that holds Warp's version directory,
    e.g. ~/.cache/warp. None: the cache of this bench's last cold run, or one filled by an unmeasured run."""
    num_envs: int | None = None
    """Environments per rank; None: the task's training default."""


@dataclass(frozen=True)
class BenchConfig:
    """Measure mjdist's speed on this machine; each measured configuration appends one JSON record to
    --results and prints one summary line. `bench --report` turns a results file into docs/performance.md
    and its plots."""

    benchmarks: Annotated[
        tuple[str, ...],
        tyro.conf.Positional,
        tyro.conf.arg(metavar="[BENCHMARK ...]", help_behavior_hint="(default: all of them)"),
    ] = ()
    """Sub-benchmarks to run, in this order: physics env train scaling launch sync."""
    task: str = "cartpole-balance"
    """Registered task to measure."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the simulation and training run: 'auto' is GPU 0 (GPUs 0..ranks-1) if a GPU is visible, else
    the CPU (CPU worker processes for several ranks). MuJoCo C always runs on the CPU."""
    num_envs: tuple[int, ...] = (64, 256, 1024, 4096)
    """Environments (worlds) of the physics and env measurements."""
    repetitions: int = 3
    """Timed repetitions of every measurement; records hold their median, min, max and each value."""
    duration: float = 1.0
    """Seconds each timed repetition of the physics and env benchmarks lasts (about; sized by calibration)."""
    ranks: int = 2
    """N: scaling trains with 1..N ranks (and, for each count from 2, as many independent single-rank runs at
    once); sync and launch compare 1 and N ranks."""
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    """The physics benchmark."""
    train: TrainingConfig = field(default_factory=TrainingConfig)
    """The training runs of train, scaling and sync."""
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    """The launch benchmark."""
    log_root: Path | None = None
    """Where the training runs go, and are kept; None: a temporary directory, deleted afterwards."""
    results: Path = Path("bench-results/results.jsonl")
    """Results file (JSON Lines): records are appended; --report reads it."""
    report: bool = False
    """Measure nothing: write docs/performance.md and docs/performance/*.png from the records in --results."""
    docs: Path = Path("docs")
    """Directory --report writes performance.md and performance/*.png into."""

    def selected(self) -> tuple[str, ...]:
        """The benchmarks to run, in the canonical order."""
        return tuple(name for name in BENCHMARKS if not self.benchmarks or name in self.benchmarks)

    def ranks_needed(self) -> int:
        """The most ranks the selected benchmarks start: --ranks for scaling, launch and sync; physics, env and
        train use one."""
        return self.ranks if {"scaling", "launch", "sync"} & set(self.selected()) else 1

    def validate(self, tasks: tuple[str, ...]) -> None:
        """Raise ValueError (one line, naming the flag) for input that cannot be measured."""
        if self.report:
            if self.benchmarks:
                raise ValueError(f"--report measures nothing; drop the benchmark names ({' '.join(self.benchmarks)})")
            check_writable(self.docs)
            return
        if not 0 < self.duration < math.inf:
            raise ValueError(f"--duration must be a positive number of seconds, got {self.duration}")
        check_fields(self, "")
        unknown = [name for name in self.benchmarks if name not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
        if self.task not in tasks:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(tasks)}")
        counts = [
            ("--repetitions", self.repetitions),
            ("--ranks", self.ranks),
            ("--train.iterations", self.train.iterations),
            ("--train.num-envs", self.train.num_envs),
            ("--launch.num-envs", self.launch.num_envs),
            *(("--num-envs", n) for n in self.num_envs),
        ]
        for flag, value in counts:
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be at least 1, got {value}")
        if not self.num_envs:
            raise ValueError("--num-envs needs at least one value")
        if not self.physics.graph_capture and not self.physics.rollout:
            raise ValueError("--physics.graph-capture is empty and --physics.no-rollout is set: nothing to measure")
        if not self.launch.caches:
            raise ValueError("--launch.caches needs cold, warm or both")
        if self.launch.warm_cache is not None and not os.path.isdir(self.launch.warm_cache):
            raise ValueError(f"--launch.warm-cache {self.launch.warm_cache} is not a directory")
        if os.path.isdir(self.results):
            raise ValueError(f"--results {self.results} is a directory; name a file")
        if len(os.fsencode(self.results.name)) > NAME_MAX:
            raise ValueError(f"--results {self.results}: its file name is longer than {NAME_MAX} bytes")
        try:
            check_writable(self.results.parent)
        except ValueError as error:
            raise ValueError(
                f"cannot write --results {self.results}: its directory cannot be created or written"
            ) from error
        if self.log_root is not None:
            check_writable(self.log_root)
