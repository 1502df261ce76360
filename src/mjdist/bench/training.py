"""The train, scaling and sync benchmarks: real PPO runs through mjdist's launcher, timed by the runner itself.

Each run is what ``train <task>`` does (a plan + ``train_on_ranks``: in-process for one rank, torchrunx for
several), with ``iterations + 1`` iterations; the first iteration is warm-up and is not counted
(:func:`mjdist.rl.metrics.env_steps_per_s`). Figures come
from rank 0's per-iteration timings (``RankResult.iterations``): collection, learning (returns and the PPO
update) and, inside learning, the gradient all-reduce. One run per (rank count, repetition) serves every
benchmark of the invocation that needs it.

The scaling benchmark also measures what the machine itself gives N processes: N independent single-rank
runs, started together in N processes, that share nothing. Their summed throughput over one run's is the
speed-up the hardware allows (cores that share caches, memory bandwidth, or a host, give less than N); the
N-rank job's throughput over theirs is what averaging gradients across ranks costs on top.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import multiprocessing
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from mjdist.bench.config import BenchConfig
from mjdist.bench.devices import BenchDevices
from mjdist.bench.records import Recorder
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.plan import plan_ranks
from mjdist.rl.metrics import IterationTiming, env_steps_per_s
from mjdist.runs import run_dir_for
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig
from mjdist.train.plan import TrainPlan
from mjdist.train.result import RankResult
from mjdist.train.run import train_on_ranks

WARM_UP_ITERATIONS = 1


@dataclass(frozen=True)
class TrainingRun:
    """One finished run: rank 0's measured iterations and what each of them collected."""

    torch_threads: int | None
    """torch threads per rank (None: torch's default)."""
    steps_per_iteration: int
    """Environment steps one iteration collects on all ranks together: num_steps_per_env x num_envs x ranks."""
    iterations: tuple[IterationTiming, ...]
    """Every iteration of the run, the warm-up first."""

    def env_steps_per_s(self) -> float:
        """Steps collected by all ranks per second of collection and learning, warm-up left out."""
        return env_steps_per_s(self.iterations, self.steps_per_iteration) or 0.0

    def mean(self, seconds: Callable[[IterationTiming], float]) -> float:
        """Mean over the measured iterations (warm-up left out) of ``seconds(timing)``."""
        return statistics.fmean(seconds(timing) for timing in self.iterations[WARM_UP_ITERATIONS:])


class TrainingRuns:
    """The runs of one ``bench`` invocation, all made on first use: ``cfg.repetitions`` runs per rank count, and
    as many groups of independent single-rank runs per count of them.

    Repetitions are interleaved (1, 2, .., N ranks, the independent groups, then again), so that a machine whose
    speed drifts during the runs (other tenants, clock changes) shifts every rank count alike instead of biasing
    the speed-up.
    """

    def __init__(
        self,
        spec: TaskSpec,
        cfg: BenchConfig,
        devices: BenchDevices,
        log_root: Path,
        rank_counts: set[int],
        independent_counts: set[int],
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.devices = devices
        self.log_root = log_root
        self.rank_counts = rank_counts
        """Every rank count that a selected benchmark reads."""
        self.independent_counts = independent_counts
        """Every number of independent single-rank runs at once that a selected benchmark reads."""
        self.num_envs = cfg.train.num_envs or spec.env.num_envs
        self._runs: dict[int, list[TrainingRun]] = {}
        self._independent: dict[int, list[list[TrainingRun]]] = {}

    def get(self, ranks: int) -> list[TrainingRun]:
        """One run per repetition with ``ranks`` ranks (one of ``rank_counts``)."""
        self._measure()
        return self._runs[ranks]

    def independent(self, count: int) -> list[list[TrainingRun]]:
        """Per repetition, the ``count`` single-rank runs made at once in as many processes."""
        self._measure()
        return self._independent[count]

    def _measure(self) -> None:
        if self._runs or self._independent:
            return
        for repetition in range(self.cfg.repetitions):
            for count in sorted(self.rank_counts):
                self._runs.setdefault(count, []).append(self._run(count, repetition))
            for count in sorted(self.independent_counts):
                self._independent.setdefault(count, []).append(self._run_independent(count, repetition))

    def config(self, ranks: int) -> dict[str, Any]:
        """What a record of runs with ``ranks`` ranks measured."""
        return {
            "device": self.devices.kind,
            "ranks": ranks,
            "num_envs": self.num_envs,
            "num_steps_per_env": self.spec.agent.num_steps_per_env,
            "iterations": self.cfg.train.iterations,
            "torch_threads": self.get(ranks)[0].torch_threads,
        }

    def _run(self, ranks: int, repetition: int) -> TrainingRun:
        plan, train_cfg = self._plan(ranks, f"bench-{ranks}-ranks-{repetition}")
        return self._result(plan, train_on_ranks(plan, train_cfg, self.spec)[0])

    def _run_independent(self, count: int, repetition: int) -> list[TrainingRun]:
        """``count`` single-rank runs at once, each in its own process (spawned: no state shared with bench)."""
        runs = [self._plan(1, f"bench-independent-{count}-{index}-{repetition}", index) for index in range(count)]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(count, mp_context=context) as pool:
            futures = [pool.submit(train_on_ranks, plan, train_cfg, self.spec) for plan, train_cfg in runs]
            return [self._result(plan, future.result()[0]) for (plan, _), future in zip(runs, futures, strict=True)]

    def _plan(self, ranks: int, run_name: str, first_gpu: int = 0) -> tuple[TrainPlan, TrainConfig]:
        train_cfg = TrainConfig(
            env=dataclasses.replace(self.spec.env, num_envs=self.num_envs),
            agent=dataclasses.replace(self.spec.agent, max_iterations=WARM_UP_ITERATIONS + self.cfg.train.iterations),
            log_root=self.log_root,
            run_name=run_name,
        )
        run_dir = run_dir_for(self.log_root, train_cfg.agent.experiment_name, run_name, datetime.datetime.now())
        selection = self.devices.selection(ranks, first_gpu)
        launch = plan_ranks(self.spec.name, selection, (LOCALHOST,), train_cfg.agent.seed, os.environ,
                            torchrunx_log_dir=str(run_dir / "torchrunx"))  # fmt: skip
        launch = dataclasses.replace(launch, torch_threads=self.devices.torch_threads_per_rank)
        return TrainPlan(launch, str(run_dir)), train_cfg

    def _result(self, plan: TrainPlan, rank_zero: RankResult) -> TrainingRun:
        return TrainingRun(
            torch_threads=plan.launch.torch_threads,
            steps_per_iteration=self.spec.agent.num_steps_per_env * self.num_envs * plan.launch.world_size,
            iterations=rank_zero.iterations,
        )


def run_train(runs: TrainingRuns, record: Recorder) -> None:
    """One record for one rank: env-steps/s and the seconds per iteration spent collecting and learning."""
    single = runs.get(1)
    record(
        "train",
        runs.config(1),
        {
            "env_steps_per_s": [run.env_steps_per_s() for run in single],
            "collect_s": [run.mean(attrgetter("collect_s")) for run in single],
            "learn_s": [run.mean(attrgetter("learn_s")) for run in single],
            "iteration_s": [run.mean(lambda timing: timing.collect_s + timing.learn_s) for run in single],
        },
    )


def run_scaling(runs: TrainingRuns, record: Recorder, max_ranks: int) -> None:
    """One record per rank count 1..max_ranks: total env-steps/s, speed-up and efficiency over one rank, and
    (for several ranks) the speed-up of as many independent runs at once, the machine's own limit."""
    single = [run.env_steps_per_s() for run in runs.get(1)]
    for ranks in range(1, max_ranks + 1):
        total = [run.env_steps_per_s() for run in runs.get(ranks)]
        speedup = [many / one for many, one in zip(total, single, strict=True)]
        metrics = {
            "env_steps_per_s": total,
            "env_steps_per_s_per_rank": [rate / ranks for rate in total],
            "speedup": speedup,
            "efficiency": [value / ranks for value in speedup],
        }
        if ranks > 1:
            independent = [sum(run.env_steps_per_s() for run in group) for group in runs.independent(ranks)]
            metrics["independent_speedup"] = [many / one for many, one in zip(independent, single, strict=True)]
            metrics["share_of_independent"] = [job / alone for job, alone in zip(total, independent, strict=True)]
        record("scaling", runs.config(ranks), metrics)


def run_sync(runs: TrainingRuns, record: Recorder, max_ranks: int) -> None:
    """One record each for 1 and max_ranks ranks: gradient all-reduce seconds per PPO update and their share."""
    algorithm = runs.spec.agent.algorithm
    for ranks in sorted({1, max_ranks}):
        measured = runs.get(ranks)
        sync = [run.mean(attrgetter("sync_s")) for run in measured]
        learn = [run.mean(attrgetter("learn_s")) for run in measured]
        all_reduces = algorithm.num_learning_epochs * algorithm.num_mini_batches if ranks > 1 else 0
        config = {**runs.config(ranks), "gradient_all_reduces_per_update": all_reduces}
        record(
            "sync",
            config,
            {
                "sync_s": sync,
                "learn_s": learn,
                "sync_share": [s / total for s, total in zip(sync, learn, strict=True)],
            },
        )
