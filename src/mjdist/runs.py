"""Run directories: naming, the write check done before anything starts, and the resolved configs."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
"""What ``repr`` adds to an object's text that differs from process to process."""

EXPORT_DIR = "exported"
"""Sub-directory of a run directory that holds the policies exported for use without mjdist."""


def list_exports(run_dir: Path) -> list[Path]:
    """The files under ``<run_dir>/exported``, by name; hidden temporary files (a write under way) are left out."""
    export_dir = run_dir / EXPORT_DIR
    if not export_dir.is_dir():
        return []
    return sorted(path for path in export_dir.rglob("*") if path.is_file() and not path.name.startswith("."))


def run_dir_for(log_root: Path, experiment: str, run_name: str, now: datetime.datetime) -> Path:
    """``<log_root>/<experiment>/<YYYY-MM-DD_HH-MM-SS>[_<run_name>]``, absolute."""
    stamp = now.strftime("%Y-%m-%d_%H-%M-%S")
    return (log_root / experiment / (f"{stamp}_{run_name}" if run_name else stamp)).absolute()


def check_writable(path: Path) -> None:
    """Raise ValueError (one line) unless ``path`` could be created and written; creates nothing."""
    existing = path
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as error:  # a name too long for the file system, a loop of links
        raise ValueError(f"cannot write runs under {path}: {error.strerror}") from None
    if not existing.is_dir():
        raise ValueError(f"cannot write runs under {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write runs under {path}: {existing} is not writable; choose another --log-root")


def write_params(run_dir: Path, configs: dict[str, Any]) -> None:
    """Write each resolved config as ``params/<name>.yaml`` (plain YAML: lists, strings, numbers)."""
    params = run_dir / "params"
    params.mkdir(parents=True, exist_ok=True)
    for name, config in configs.items():
        (params / f"{name}.yaml").write_text(yaml.safe_dump(to_plain(config), sort_keys=False))


def to_plain(value: Any) -> Any:
    """``value`` as plain data for YAML or JSON: dataclasses as dicts, tuples and sets as lists, paths as strings,
    enums as their values, functions and classes as ``module:name`` (mjlab's configs hold all of these); anything
    else that is not plain data as its text without memory addresses, so the result is the same in every process."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, type) or inspect.isroutine(value):
        return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"
    return MEMORY_ADDRESS.sub("", repr(value))
