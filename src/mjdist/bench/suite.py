"""Run the selected benchmarks of one task, in order, sharing one log root and one set of training runs."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import warp as wp

from mjdist.bench.config import BenchConfig
from mjdist.bench.devices import BenchDevices
from mjdist.bench.env_step import run_env
from mjdist.bench.launch_time import run_launch
from mjdist.bench.physics import run_physics
from mjdist.bench.records import Recorder
from mjdist.bench.training import TrainingRuns, run_scaling, run_sync, run_train
from mjdist.tasks import TaskSpec

log = logging.getLogger(__name__)


def run_benchmarks(spec: TaskSpec, cfg: BenchConfig, devices: BenchDevices, record: Recorder) -> None:
    """Measure every benchmark ``cfg`` selects; each record is appended as soon as it is measured."""
    wp.config.log_level = wp.LOG_WARNING  # as in training: no line per loaded kernel module
    with _log_root(cfg.log_root) as log_root:
        independent = set(range(2, cfg.ranks + 1)) if "scaling" in cfg.selected() else set()
        runs = TrainingRuns(spec, cfg, devices, log_root, training_rank_counts(cfg), independent)
        benchmarks: dict[str, Callable[[], None]] = {
            "physics": lambda: run_physics(spec, cfg, devices.simulation_device, record),
            "env": lambda: run_env(spec, cfg, devices.simulation_device, record),
            "train": lambda: run_train(runs, record),
            "scaling": lambda: run_scaling(runs, record, cfg.ranks),
            "launch": lambda: run_launch(spec, cfg, devices, log_root, record),
            "sync": lambda: run_sync(runs, record, cfg.ranks),
        }
        for name in cfg.selected():
            log.info("bench %s: %s on %s", name, spec.name, devices.kind)
            benchmarks[name]()


def training_rank_counts(cfg: BenchConfig) -> set[int]:
    """The rank counts whose training runs the selected benchmarks read: train 1, scaling 1..N, sync 1 and N."""
    selected = cfg.selected()
    counts = {1} if {"train", "scaling", "sync"} & set(selected) else set()
    if "scaling" in selected:
        counts |= set(range(1, cfg.ranks + 1))
    if "sync" in selected:
        counts.add(cfg.ranks)
    return counts


@contextlib.contextmanager
def _log_root(kept: Path | None) -> Iterator[Path]:
    """``kept`` if given; else a temporary directory, deleted afterwards."""
    if kept is not None:
        yield kept.absolute()
        return
    with tempfile.TemporaryDirectory(prefix="mjdist-bench-runs-") as temporary:
        yield Path(temporary)
