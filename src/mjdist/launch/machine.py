"""What this machine offers a job: the visible GPUs, the usable cores, the free memory, MIG, and whether CUDA
already started.

:func:`read_machine` is the one place that reads them (CUDA_VISIBLE_DEVICES, torch's device count, the CPU
affinity, the available memory); planning takes the :class:`Machine` it returns, so a test passes a machine
instead of patching torch. :func:`free_gpu_memory` asks CUDA, in another process, what each GPU has free.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Machine:
    """A snapshot of this machine's devices, taken once before planning."""

    cuda_visible_devices: str | None
    """CUDA_VISIBLE_DEVICES as set (None when unset: every GPU is visible)."""
    gpu_count: int
    """GPUs the CUDA runtime sees (0 without a GPU, or with CUDA_VISIBLE_DEVICES='')."""
    usable_cores: int
    """Cores this process may run on (its CPU affinity)."""
    cuda_initialized: bool = False
    """Whether this process already started CUDA (then CUDA_VISIBLE_DEVICES can no longer be narrowed)."""
    available_memory: int | None = None
    """Bytes of host memory available to new processes without swapping (None: not known)."""

    @property
    def visible(self) -> tuple[str, ...]:
        """The visible GPU list as the CUDA runtime reads CUDA_VISIBLE_DEVICES (unset: all ``gpu_count``)."""
        return parse_visible_devices(self.cuda_visible_devices, self.gpu_count)

    @property
    def on_mig(self) -> bool:
        """Whether the visible devices are MIG instances (named by MIG UUIDs)."""
        return any(is_mig(entry) for entry in self.visible)


def read_machine(environ: Mapping[str, str] = os.environ) -> Machine:
    """This machine, read once; torch is imported only when CUDA_VISIBLE_DEVICES leaves any GPU to count."""
    cuda_visible_devices = environ.get("CUDA_VISIBLE_DEVICES")
    gpu_count, initialized = 0, False
    if cuda_visible_devices != "":
        import torch

        gpu_count = torch.cuda.device_count()
        initialized = torch.cuda.is_initialized()
    elif "torch" in sys.modules:
        initialized = sys.modules["torch"].cuda.is_initialized()
    cores = max(len(os.sched_getaffinity(0)), 1)
    return Machine(cuda_visible_devices, gpu_count, cores, initialized, psutil.virtual_memory().available)


def free_gpu_memory(physical_gpus: tuple[str, ...]) -> tuple[int, ...]:
    """Free device memory of each GPU (CUDA_VISIBLE_DEVICES entries), asked of CUDA in a short-lived process so
    that this one starts no CUDA context."""
    query = "import torch; print(*(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())))"
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(physical_gpus)}
    output = subprocess.run([sys.executable, "-c", query], env=environ, capture_output=True, text=True, check=False)
    if output.returncode != 0:  # the training itself will say what is wrong with CUDA
        log.warning("Free GPU memory unknown (%s); the memory check covers the host only", output.stderr.strip()[-200:])
        return ()
    return tuple(int(free) for free in output.stdout.split())


def parse_visible_devices(value: str | None, device_count: int) -> tuple[str, ...]:
    """The visible GPU list as the CUDA runtime reads CUDA_VISIBLE_DEVICES (unset: all ``device_count``).

    Entries are stripped and kept as strings (ids, UUIDs, MIG ids); an empty or negative entry ends the list.
    """
    if value is None:
        return tuple(str(i) for i in range(device_count))
    devices: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return tuple(devices)


def is_mig(entry: str) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES entry names a MIG instance."""
    return entry.startswith("MIG-")
