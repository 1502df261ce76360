"""What a record says about where it was measured: the machine, the package versions and the git commit."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from mjdist.bench.records import Provenance
from mjdist.launch.machine import read_machine

DISTRIBUTIONS = {
    "torch": "torch",
    "warp": "warp-lang",
    "mujoco": "mujoco",
    "mujoco_warp": "mujoco-warp",
    "rsl_rl": "rsl-rl-lib",
    "torchrunx": "torchrunx",
    "mjdist": "mjdist",
}
"""Record key -> the installed distribution whose version it holds."""
GIB = 1024**3


def provenance() -> Provenance:
    """The machine, versions and commit of this process (queried once per ``bench`` invocation)."""
    commit, dirty = git_state(Path(__file__).resolve().parent)
    return Provenance(machine=machine(), versions=versions(), git_commit=commit, git_dirty=dirty)


def machine() -> dict[str, Any]:
    """Hostname, CPU model, the cores this process may use, memory, and the first visible GPU (or None)."""
    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": read_machine().usable_cores,
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "gpu_model": gpu_model(),
    }


def gpu_model() -> str | None:
    """Name of the first visible CUDA GPU, or None when none is visible."""
    if read_machine().gpu_count == 0:
        return None
    import torch

    return torch.cuda.get_device_name(0)


def versions() -> dict[str, str | None]:
    """Python's version and each benchmarked package's installed version (None if it is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for key, distribution in DISTRIBUTIONS.items():
        try:
            found[key] = version(distribution)
        except PackageNotFoundError:
            found[key] = None
    return found


def git_state(directory: Path) -> tuple[str | None, bool | None]:
    """The commit checked out around ``directory`` and whether the tree has changes; (None, None) outside git."""
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        changes = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(changes)


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
