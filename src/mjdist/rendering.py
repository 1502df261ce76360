"""Choosing MuJoCo's headless OpenGL backend for `play --video` and `train --video`. Kept free of heavy imports.

MuJoCo reads MUJOCO_GL when it is first imported. The choice is made while planning and returned as variables
for the rendering rank's environment (:attr:`mjdist.launch.plan.LaunchPlan.rank_environment`), which the rank
sets before it imports mujoco; nothing here changes the caller's ``os.environ``.

On a GPU, EGL renders on the GPU itself, but compute-only containers lack NVIDIA's EGL library and MIG
instances cannot render with EGL at all; so EGL is probed in a child process first (a broken driver can crash
the prober, not the caller), and OSMesa, which renders on the CPU anywhere, is the fallback. OSMesa is loaded in a
child process too, so a library that is installed but cannot load is refused like a missing one. A user's own
MUJOCO_GL is respected as it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from ctypes.util import find_library

from mjdist.errors import UsageError

log = logging.getLogger(__name__)

INSTALL_OSMESA = "apt-get install libosmesa6"
INSTALL_EGL = "the NVIDIA driver's EGL library (libEGL_nvidia.so.0, part of the full driver, not compute-only)"
EGL_PROBE = "import mujoco; context = mujoco.GLContext(16, 16); context.make_current(); context.free()"
"""Creates and uses a tiny EGL context: what rendering needs first."""
EGL_PROBE_TIMEOUT_S = 120
OSMESA_PROBE_TIMEOUT_S = 60


GL_BACKENDS = ("egl", "osmesa", "glfw", "glx")
"""The values of MUJOCO_GL that MuJoCo renders with on Linux."""


class RenderingUnavailable(UsageError):
    """No OpenGL backend can render here; the message is one line that names what to install."""


def choose_gl_backend(
    device: str, rank_visible_devices: str | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """MUJOCO_GL (and MUJOCO_EGL_DEVICE_ID) for rendering in a rank on ``device`` (``cpu`` or ``cuda:<index>`` among
    the rank's visible GPUs, ``rank_visible_devices`` when the rank gets its own CUDA_VISIBLE_DEVICES); raise
    RenderingUnavailable when no backend can render."""
    gpu = int(device.split(":")[1]) if device.startswith("cuda") else None
    rank_environ = dict(environ)
    if rank_visible_devices is not None:
        rank_environ["CUDA_VISIBLE_DEVICES"] = rank_visible_devices
    chosen = environ.get("MUJOCO_GL") or _pick(gpu, rank_environ)
    if chosen not in GL_BACKENDS:
        raise RenderingUnavailable(f"MUJOCO_GL={chosen!r} is not a backend MuJoCo renders with; set it to "
                                   f"{', '.join(GL_BACKENDS)}, or unset it to let mjdist choose")  # fmt: skip
    variables = {"MUJOCO_GL": chosen}
    if chosen == "egl" and gpu is not None:
        variables["MUJOCO_EGL_DEVICE_ID"] = environ.get("MUJOCO_EGL_DEVICE_ID", str(gpu))  # the rank's GPU
        if not variables["MUJOCO_EGL_DEVICE_ID"].isdigit():
            raise RenderingUnavailable(f"MUJOCO_EGL_DEVICE_ID={variables['MUJOCO_EGL_DEVICE_ID']!r} is not a GPU "
                                       "index; set it to one (0, 1, ...) or unset it")  # fmt: skip
    if chosen == "osmesa":
        reason = osmesa_failure()
        if reason is not None:
            raise RenderingUnavailable(_missing_osmesa(gpu, reason))
    return variables


def check_video_flags(length: int, width: int, height: int) -> None:
    """Raise ValueError (one line, naming the flag) for a clip that cannot be recorded."""
    if length < 1:
        raise ValueError(f"--video-length must be at least 1 frame, got {length}")
    for flag, value in (("--video-width", width), ("--video-height", height)):
        if value < 16 or value % 2:
            raise ValueError(f"{flag} must be an even number of pixels, at least 16, got {value}")


def _pick(gpu: int | None, rank_environ: Mapping[str, str]) -> str:
    if gpu is None:
        return "osmesa"
    if on_mig(rank_environ):
        log.info("Rendering with OSMesa on the CPU: EGL cannot render on a MIG instance")
        return "osmesa"
    reason = egl_failure(gpu, rank_environ)
    if reason is None:
        return "egl"
    osmesa_reason = osmesa_failure()
    if osmesa_reason is not None:
        raise RenderingUnavailable(_missing_osmesa(gpu, osmesa_reason, reason))
    log.info("Rendering with OSMesa on the CPU (slower): EGL cannot render on GPU %d (%s)", gpu, reason)
    return "osmesa"


def on_mig(environ: Mapping[str, str]) -> bool:
    """Whether the visible CUDA devices are MIG instances (named by MIG UUIDs, as NVIDIA's container runtime
    and Kubernetes' device plugin do)."""
    return any(
        entry.strip().startswith("MIG-")
        for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        for entry in environ.get(variable, "").split(",")
    )


def osmesa_failure() -> str | None:
    """None if libOSMesa is installed and loads (tried in a child process: loading Mesa here before triton would
    crash a later triton import), else why not, in a few words."""
    library = find_library("OSMesa")
    if library is None:
        return "libOSMesa is not installed"
    probe = subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({library!r})"], capture_output=True,
                           text=True, timeout=OSMESA_PROBE_TIMEOUT_S)  # fmt: skip
    if probe.returncode == 0:
        return None
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    return f"libOSMesa cannot be loaded ({lines[-1] if lines else f'exit code {probe.returncode}'})"


def egl_failure(gpu: int, rank_environ: Mapping[str, str]) -> str | None:
    """None if MuJoCo can create an EGL context on visible GPU ``gpu`` (probed in a child process with the rank's
    environment), else why not."""
    env = {**rank_environ, "MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": str(gpu)}
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


def _missing_osmesa(gpu: int | None, osmesa_reason: str, egl_reason: str | None = None) -> str:
    if gpu is None:
        return (f"--video renders with OSMesa on the CPU, and {osmesa_reason}; install it "
                f"({INSTALL_OSMESA}) or drop --video")  # fmt: skip
    why = "EGL cannot render on a MIG instance" if egl_reason is None else f"EGL cannot render ({egl_reason})"
    return (f"--video on GPU {gpu}: {why}, and {osmesa_reason}; install {INSTALL_EGL}, or OSMesa "
            f"({INSTALL_OSMESA}), or drop --video")  # fmt: skip
