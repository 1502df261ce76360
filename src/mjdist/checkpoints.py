"""Writing, finding and reading checkpoints: ``model_<iteration>.pt`` files in run directories.

Every problem with a checkpoint is a :class:`CheckpointError` whose message is one line naming the file and
what is wrong, so that `train --resume` and `play` can refuse it with exit code 2 and write nothing.

Checkpoints are read weights-only (:func:`load_weights_only`): tensors, numbers, strings and plain containers,
which is all that mjdist and rsl_rl save. A file whose pickle would import or call anything else is refused
before any of it runs, so a checkpoint from a download, a dataset or a colleague's run cannot execute code.

A checkpoint is written under a temporary name and renamed into place, so a kill during a save never leaves a
``model_<iteration>.pt`` that cannot be loaded; a run directory's newest checkpoint that cannot be read anyway
(copied half, damaged later) is skipped, and named, in favour of the one before it.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjdist.atomic_files import write_bytes_atomically
from mjdist.errors import TrainingFailure, UsageError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read (weights-only) and checked: a complete rsl_rl checkpoint of its task."""

    path: Path
    """The file, absolute."""
    iteration: int
    """The iteration it was saved after, from its state (``iter``); the file name only orders a run's files."""
    train_cfg: dict | None
    """The rsl_rl train_cfg that built its networks (None in checkpoints that do not record it)."""
    state: dict[str, Any]
    """Everything it holds: networks, optimizer, normalizers, ``iter``, ``infos``."""


class CheckpointError(UsageError):
    """A checkpoint or run directory that cannot be used; the message is one line."""


class CheckpointWriteError(TrainingFailure):
    """A checkpoint could not be written (a full disk, a directory that became unwritable)."""


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path`` atomically (:mod:`mjdist.atomic_files`): it is either absent or complete, and
    earlier checkpoints are never touched."""
    import torch

    serialized = io.BytesIO()  # torch's zip writer turns a failed write into an opaque RuntimeError; write() doesn't
    torch.save(state, serialized)
    try:
        write_bytes_atomically(path, serialized.getvalue())
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {reason}; the earlier checkpoints in {path.parent} are intact"
        ) from error


def checkpoint_iteration(path: Path) -> int:
    """The iteration in the name ``model_<iteration>.pt``, which orders a run's checkpoints."""
    match = CHECKPOINT_NAME.match(path.name)
    if match is None:
        raise CheckpointError(f"{path} is not a checkpoint (expected a file named model_<iteration>.pt)")
    return int(match.group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's ``model_<iteration>.pt`` files, by iteration (none when the directory does not exist)."""
    if not run_dir.is_dir():
        return []
    return sorted((path for path in run_dir.iterdir() if CHECKPOINT_NAME.match(path.name)), key=checkpoint_iteration)


def newest_loadable_checkpoint(run_dir: Path, task: str) -> Checkpoint:
    """The checkpoint of ``task`` with the highest iteration in ``run_dir`` that can be read; each newer one
    that cannot is named in a warning. A CheckpointError if none can."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CheckpointError(f"run directory {run_dir} has no model_<iteration>.pt checkpoints")
    skipped: list[str] = []
    for path in reversed(checkpoints):
        try:
            checkpoint = read_checkpoint(path, task)
        except UnsafeCheckpointError:
            raise  # refused, never passed over for an older one: the run directory itself is not to be trusted
        except CheckpointError as error:
            log.warning("Skipping checkpoint %s: %s", path.name, error)
            skipped.append(path.name)
            continue
        return checkpoint
    raise CheckpointError(f"no checkpoint in {run_dir} can be used (skipped {', '.join(skipped)})")


def latest_run(experiment_dir: Path) -> Path:
    """The newest run (by its timestamped name) under ``<log-root>/<experiment>`` that has a checkpoint."""
    runs = sorted(experiment_dir.iterdir(), reverse=True) if experiment_dir.is_dir() else []
    for run_dir in runs:
        if list_checkpoints(run_dir):
            return run_dir
    raise CheckpointError(f"no run with checkpoints under {experiment_dir}; train one first, or pass --checkpoint")


def resolve_checkpoint(path: Path, task: str) -> Checkpoint:
    """A checkpoint file as given, or the newest loadable checkpoint of a run directory, read."""
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as error:  # a name too long for the file system, a loop of links
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    if is_dir:
        return newest_loadable_checkpoint(path, task)
    if not exists:
        raise CheckpointError(f"checkpoint {path} does not exist")
    checkpoint_iteration(path)
    return read_checkpoint(path, task)


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that a weights-only load refuses: it would import or call code."""


REFUSED_OBJECT = re.compile(
    r"GLOBAL (\S+) (?:was not an allowed global|whose module)|unrecognized function (\S+)|got <class '([^']+)'>"
)
"""How torch's weights-only unpickler names the import, call or class it refused."""


def load_weights_only(path: Path, map_location: str | None = "cpu") -> Any:
    """``torch.load`` that never imports or calls anything the file names; a CheckpointError if it would have to."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = REFUSED_OBJECT.search(str(error))
        if refused is None:  # not a refusal: a damaged or foreign file
            raise CheckpointError(f"cannot read checkpoint {path}: {_last_line(error)}") from error
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds objects that a safe (weights-only) load refuses, the first being "
            f"{next(name for name in refused.groups() if name)}; mjdist never runs code from a checkpoint"
        ) from error
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from error


def _last_line(error: Exception) -> str:
    """The unpickler's own words, without torch's advice about weights_only around them."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and "weights_only" not in line]
    return lines[-1] if lines else type(error).__name__


def written_by_mjlab(infos: dict) -> bool:
    """Whether a checkpoint's ``infos`` are those of mjlab's own runner: they record the environment's state and no
    task, so such a checkpoint is taken for any task; its networks must fit when it loads."""
    return isinstance(infos, dict) and "task" not in infos and "env_state" in infos


def read_checkpoint(path: Path, task: str) -> Checkpoint:
    """Load a checkpoint on the CPU (weights-only) and check that it is a complete rsl_rl checkpoint of ``task``."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not an rsl_rl checkpoint (it holds a {type(checkpoint).__name__})")
    missing = {"actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter"} - set(checkpoint)
    if missing:
        raise CheckpointError(f"{path} is not an rsl_rl checkpoint (missing {', '.join(sorted(missing))})")
    infos = checkpoint.get("infos") or {}
    trained_on = infos.get("task")
    if trained_on != task and not written_by_mjlab(infos):
        raise CheckpointError(f"checkpoint {path} was trained on task {trained_on!r}, not {task!r}")
    train_cfg = infos.get("train_cfg")
    return Checkpoint(path.absolute(), int(checkpoint["iter"]), train_cfg if isinstance(train_cfg, dict) else None,
                      checkpoint)  # fmt: skip
