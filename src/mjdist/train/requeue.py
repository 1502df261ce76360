"""Requeue-safe runs: ``--run-name NAME --resume auto`` continues the run named NAME, or starts it.

Run again after a preemption (SLURM ``--requeue``, a spot VM), the same command finds the newest
``<timestamp>_NAME`` directory of the experiment and continues it there from its newest loadable checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mjdist.checkpoints import Checkpoint, CheckpointError, newest_loadable_checkpoint

AUTO = Path("auto")
"""``--resume auto``."""


@dataclass(frozen=True)
class Continuation:
    """Where a run named by ``--run-name`` continues under ``--resume auto``."""

    run_dir: Path | None
    """Its existing directory (None: no run of that name yet, a new one is made)."""
    resume_from: Checkpoint | None
    """Its newest loadable checkpoint, read (None: it starts from scratch)."""


def find_continuation(experiment_dir: Path, run_name: str, task: str) -> Continuation:
    """The newest ``<timestamp>_<run_name>`` directory under ``experiment_dir`` and its newest loadable
    checkpoint; a directory without checkpoints is started again from scratch."""
    run_dir = newest_run_dir(experiment_dir, run_name)
    if run_dir is None:
        return Continuation(None, None)
    try:
        return Continuation(run_dir, newest_loadable_checkpoint(run_dir, task))
    except CheckpointError:
        return Continuation(run_dir, None)


def newest_run_dir(experiment_dir: Path, run_name: str) -> Path | None:
    """The newest ``<timestamp>_<run_name>`` directory under ``experiment_dir``, absolute; None if there is none."""
    pattern = re.compile(rf"^\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_{re.escape(run_name)}$")
    if not experiment_dir.is_dir():
        return None
    runs = sorted(path for path in experiment_dir.iterdir() if path.is_dir() and pattern.match(path.name))
    return runs[-1].absolute() if runs else None
