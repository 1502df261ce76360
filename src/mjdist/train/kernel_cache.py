"""Which environments' Warp kernels the kernel cache already holds, so that ranks compile them only once.

Warp compiles a module the first time it is loaded and keeps it in its kernel cache (``WARP_CACHE_PATH``,
default ``~/.cache/warp/<version>``); processes that find it there only load it. Ranks that build the same
environment at the same time on a cold cache would each compile every module. A marker file in the cache,
written once an environment was built, tells later launches that its kernels are there, so that their ranks
can build at the same time instead of one after another.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import warp as wp

from mjdist.envs.config import EnvConfig
from mjdist.runs import to_plain

MARKER_DIR = "mjdist-built"
"""Directory of the markers inside Warp's kernel cache directory."""


def built_marker(task: str, env: EnvConfig | Any, device: str) -> Path:
    """The marker of ``task`` built with ``env`` on ``device`` (its kind and, for GPUs, its architecture), for
    the installed Warp and MuJoCo-Warp. It lives in the kernel cache, so clearing the cache removes it."""
    warp_device = wp.get_device(device)
    key = "|".join(
        (
            task,
            json.dumps(to_plain(env), sort_keys=True),  # not repr: an mjlab config's names its functions' addresses
            f"cuda sm{warp_device.arch}" if warp_device.is_cuda else "cpu",
            f"warp {wp.config.version}",
            f"mujoco-warp {version('mujoco-warp')}",
        )
    )
    return Path(wp.config.kernel_cache_dir) / MARKER_DIR / hashlib.sha256(key.encode()).hexdigest()[:32]


def mark_built(marker: Path) -> None:
    """Record that the kernels behind ``marker`` are in the cache."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
