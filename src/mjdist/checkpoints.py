"""Finding and reading checkpoints: ``model_<iteration>.pt`` files in run directories.

Every problem with a checkpoint is a :class:`CheckpointError` whose message is one line naming the file and
what is wrong, so that `train --resume` and `play` can refuse it with exit code 2 and write nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mjdist.errors import UsageError

CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pt$")


class CheckpointError(UsageError):
    """A checkpoint or run directory that cannot be used; the message is one line."""


def checkpoint_iteration(path: Path) -> int:
    """The iteration in ``model_<iteration>.pt``."""
    match = CHECKPOINT_NAME.match(path.name)
    if match is None:
        raise CheckpointError(f"{path} is not a checkpoint (expected a file named model_<iteration>.pt)")
    return int(match.group(1))


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint with the highest iteration in ``run_dir``."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    checkpoints = [path for path in run_dir.iterdir() if CHECKPOINT_NAME.match(path.name)]
    if not checkpoints:
        raise CheckpointError(f"run directory {run_dir} has no model_<iteration>.pt checkpoints")
    return max(checkpoints, key=checkpoint_iteration)


def latest_run(experiment_dir: Path) -> Path:
    """The newest run (by its timestamped name) under ``<log-root>/<experiment>`` that has a checkpoint."""
    runs = sorted(experiment_dir.iterdir(), reverse=True) if experiment_dir.is_dir() else []
    for run_dir in runs:
        if run_dir.is_dir() and any(CHECKPOINT_NAME.match(path.name) for path in run_dir.iterdir()):
            return run_dir
    raise CheckpointError(f"no run with checkpoints under {experiment_dir}; train one first, or pass --checkpoint")


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file as given, or the latest checkpoint of a run directory."""
    if path.is_dir():
        return latest_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    checkpoint_iteration(path)
    return path


def read_checkpoint(path: Path, task: str) -> dict[str, Any]:
    """Load a checkpoint on the CPU and check that it is a complete rsl_rl checkpoint of ``task``."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not an rsl_rl checkpoint (it holds a {type(checkpoint).__name__})")
    missing = {"actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter"} - set(checkpoint)
    if missing:
        raise CheckpointError(f"{path} is not an rsl_rl checkpoint (missing {', '.join(sorted(missing))})")
    trained_on = (checkpoint.get("infos") or {}).get("task")
    if trained_on != task:
        raise CheckpointError(f"checkpoint {path} was trained on task {trained_on!r}, not {task!r}")
    return checkpoint
