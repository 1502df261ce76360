"""mjlab's tasks as mjdist tasks: every id in mjlab's registry (``Mjlab-Velocity-Flat-Unitree-Go1``, third-party
packages' through mjlab's ``mjlab.tasks`` entry points) whenever mjlab is installed.

``import mjlab.tasks`` takes seconds (it builds every task's config), so the list of ids is cached in a JSON file
keyed on mjlab's version and the ``mjlab.tasks`` entry points: ``train --help`` reads the cache, and only the task
that runs is imported.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from functools import cache
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mjdist.tasks import TaskSpec

MJLAB_ENTRY_POINT_GROUP = "mjlab.tasks"
"""mjlab's own entry-point group for third-party task packages."""
MJLAB_ADAPTER = "mjdist_tasks.mjlab"
"""The module whose ``mjlab_task_spec(task_id)`` makes an mjlab task's TaskSpec."""


def mjlab_version() -> str | None:
    """The installed mjlab's version, or None when mjlab is not installed (read without importing it)."""
    try:
        return version("mjlab")
    except PackageNotFoundError:
        return None


def cache_path(mjlab: str) -> Path:
    """The task-list cache for ``mjlab`` (a version) and the installed ``mjlab.tasks`` entry points."""
    plugins = sorted(f"{ep.name}={ep.value}" for ep in entry_points(group=MJLAB_ENTRY_POINT_GROUP))
    key = hashlib.sha256("|".join([mjlab, *plugins]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "mjdist" / f"mjlab-tasks-{key}.json"


@cache
def mjlab_task_ids() -> tuple[str, ...]:
    """Every id in mjlab's registry (none when mjlab is not installed), from the cache when it is current."""
    mjlab = mjlab_version()
    if mjlab is None:
        return ()
    path = cache_path(mjlab)
    try:
        return tuple(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    import mjlab.tasks
    from mjlab.tasks.registry import list_tasks

    ids = tuple(list_tasks())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(ids))
    temporary.replace(path)
    return ids


def load_mjlab_task(task_id: str) -> TaskSpec:
    """The mjdist task of mjlab's ``task_id`` (imports mjlab's tasks, and the bundled adapter ``mjdist_tasks.mjlab``,
    which is loaded by name like any task package)."""
    import mjlab.tasks  # noqa: F401  (registers the built-in and the entry points' tasks)

    return importlib.import_module(MJLAB_ADAPTER).mjlab_task_spec(task_id)
