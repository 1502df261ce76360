"""Headless rendering set-up for `play --video` and `train --video`, done before anything imports mujoco.

MuJoCo picks its OpenGL backend from MUJOCO_GL when it is imported: EGL on GPU machines, OSMesa on CPU machines
(Debian: libosmesa6). Kept free of heavy imports.
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import os

GL_LIBRARIES = {"egl": ("EGL", "libegl1"), "osmesa": ("OSMesa", "libosmesa6")}
"""MUJOCO_GL backend -> (the library it loads, the Debian package that has it)."""


def renderer_for(device: str) -> str:
    """The MUJOCO_GL backend for rendering on ``device``: MUJOCO_GL if set, else EGL on a GPU and OSMesa on the CPU."""
    return os.environ.get("MUJOCO_GL") or ("egl" if device.startswith("cuda") else "osmesa")


def check_renderer(device: str) -> None:
    """Raise ValueError (one line) if the library of the backend for ``device`` is not installed."""
    backend = renderer_for(device)
    library, package = GL_LIBRARIES.get(backend, (None, None))
    if library is not None and ctypes.util.find_library(library) is None:
        raise ValueError(
            f"--video renders headless with {backend} (MUJOCO_GL), but lib{library} is not installed; install it "
            f"(Debian: apt-get install {package}) or run without --video"
        )


def choose_renderer(device: str) -> None:
    """Set MUJOCO_GL for rendering on ``device`` (unless it is set), for this process and the ranks it starts."""
    os.environ["MUJOCO_GL"] = renderer_for(device)
    load_triton_before_mesa()


def load_triton_before_mesa() -> None:
    """Mesa's OSMesa and triton (imported by torch._dynamo, which tensordict imports) each carry their own LLVM, and
    triton's library crashes while loading if Mesa's came first; so with MUJOCO_GL=osmesa, triton, when installed,
    is loaded before mujoco is. Every process that imports mujoco under MUJOCO_GL=osmesa calls this first."""
    if os.environ.get("MUJOCO_GL") == "osmesa" and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def check_video_flags(length: int, width: int, height: int) -> None:
    """Raise ValueError (one line, naming the flag) for a clip that cannot be recorded."""
    if length < 1:
        raise ValueError(f"--video-length must be at least 1 frame, got {length}")
    for flag, value in (("--video-width", width), ("--video-height", height)):
        if value < 16 or value % 2:
            raise ValueError(f"{flag} must be an even number of pixels, at least 16, got {value}")
