"""Choosing MuJoCo's headless OpenGL backend for `play --video` and `train --video`, before anything imports mujoco
(it reads MUJOCO_GL on import). Kept free of heavy imports.

On a GPU, EGL renders on the GPU itself, but compute-only containers lack NVIDIA's EGL library and MIG
instances cannot render with EGL at all; so EGL is probed in a child process first (a broken driver can crash
the prober, not the caller), and OSMesa, which renders on the CPU anywhere, is the fallback. A user's own
MUJOCO_GL is respected as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from ctypes.util import find_library

from mjdist.errors import UsageError

log = logging.getLogger(__name__)

INSTALL_OSMESA = "apt-get install libosmesa6"
INSTALL_EGL = "the NVIDIA driver's EGL library (libEGL_nvidia.so.0, part of the full driver, not compute-only)"
EGL_PROBE = "import mujoco; context = mujoco.GLContext(16, 16); context.make_current(); context.free()"
"""Creates and uses a tiny EGL context: what rendering needs first."""
EGL_PROBE_TIMEOUT_S = 120


class RenderingUnavailable(UsageError):
    """No OpenGL backend can render here; the message is one line that names what to install."""


def choose_gl_backend(device: str) -> str:
    """Set MUJOCO_GL (and MUJOCO_EGL_DEVICE_ID) for rendering next to ``device`` (``cpu`` or ``cuda:<visible
    index>``) and return the backend; raise RenderingUnavailable when none can render."""
    gpu = int(device.split(":")[1]) if device.startswith("cuda") else None
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is None:
        chosen = _pick(gpu)
        os.environ["MUJOCO_GL"] = chosen
    if chosen == "egl" and gpu is not None:
        os.environ.setdefault("MUJOCO_EGL_DEVICE_ID", str(gpu))  # the rank's GPU, not the first visible one
    if chosen == "osmesa":
        if find_library("OSMesa") is None:
            raise RenderingUnavailable(_missing_osmesa(gpu))
        load_triton_before_mesa()
    return chosen


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


def _pick(gpu: int | None) -> str:
    if gpu is None:
        return "osmesa"
    if on_mig():
        log.info("Rendering with OSMesa on the CPU: EGL cannot render on a MIG instance")
        return "osmesa"
    reason = egl_failure(gpu)
    if reason is None:
        return "egl"
    if find_library("OSMesa") is None:
        raise RenderingUnavailable(_missing_osmesa(gpu, reason))
    log.info("Rendering with OSMesa on the CPU (slower): EGL cannot render on GPU %d (%s)", gpu, reason)
    return "osmesa"


def on_mig() -> bool:
    """Whether the visible CUDA devices are MIG instances (named by MIG UUIDs, as NVIDIA's container runtime
    and Kubernetes' device plugin do)."""
    return any(
        entry.strip().startswith("MIG-")
        for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        for entry in os.environ.get(variable, "").split(",")
    )


def egl_failure(gpu: int) -> str | None:
    """None if MuJoCo can create an EGL context on visible GPU ``gpu`` (probed in a child process), else why not."""
    env = {**os.environ, "MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": str(gpu)}
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        probe = subprocess.run([sys.executable, "-c", EGL_PROBE], env=env, capture_output=True, text=True,
                               timeout=EGL_PROBE_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"the EGL probe did not finish in {EGL_PROBE_TIMEOUT_S} s"
    if probe.returncode == 0:
        return None
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the EGL probe exited with code {probe.returncode}"


def _missing_osmesa(gpu: int | None, egl_reason: str | None = None) -> str:
    if gpu is None:
        return (f"--video renders with OSMesa on the CPU, and libOSMesa is not installed; install it "
                f"({INSTALL_OSMESA}) or drop --video")  # fmt: skip
    why = "EGL cannot render on a MIG instance" if egl_reason is None else f"EGL cannot render ({egl_reason})"
    return (f"--video on GPU {gpu}: {why}, and libOSMesa is not installed; install {INSTALL_EGL}, or OSMesa "
            f"({INSTALL_OSMESA}), or drop --video")  # fmt: skip
