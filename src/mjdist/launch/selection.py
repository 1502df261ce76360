"""Device selection from Python values and this machine: what ``train``, ``play`` and ``mjdist.launch`` share.

:mod:`mjdist.launch.devices` holds the pure rules; this module feeds them CUDA_VISIBLE_DEVICES, the GPU count
and the usable cores, and turns Python values (``None``, ``"all"``, ``[0, 1]``, ``4``) into the flags' strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mjdist.launch.devices import DeviceSelection, check_gpus_exist, cuda_device_count, resolve_devices

GpuIds = int | str | Sequence[int | str] | None
"""``()`` (the default: GPU 0 if one is visible, else the CPU), ``None`` (the CPU), ``"all"``, one id, or ids."""


def gpu_id_flags(gpu_ids: GpuIds) -> tuple[str, ...]:
    """``gpu_ids`` as the ``--gpu-ids`` strings: ``None`` -> ``("None",)``, ``[0, 1]`` -> ``("0", "1")``."""
    if gpu_ids is None:
        return ("None",)
    if isinstance(gpu_ids, int | str):
        return (str(gpu_ids),)
    return tuple(str(gpu_id) for gpu_id in gpu_ids)


def cpu_worker_flag(cpu_workers: int | str | None) -> str | None:
    """``cpu_workers`` as the ``--cpu-workers`` string (a number or 'auto'), None when not given."""
    return None if cpu_workers is None else str(cpu_workers)


def visible_gpus() -> tuple[str | None, int]:
    """CUDA_VISIBLE_DEVICES (None when unset) and the number of GPUs CUDA sees."""
    cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    return cuda_visible_devices, cuda_device_count(cuda_visible_devices)


def select_devices(gpu_ids: tuple[str, ...], cpu_workers: str | None, check_gpus: bool = True) -> DeviceSelection:
    """Resolve the flags against this machine; with ``check_gpus``, also refuse GPUs named but not present."""
    cuda_visible_devices, device_count = visible_gpus()
    selection = resolve_devices(
        gpu_ids=gpu_ids or None,
        cpu_workers=cpu_workers,
        cuda_visible_devices=cuda_visible_devices,
        device_count=device_count,
        cpu_count=len(os.sched_getaffinity(0)),
    )
    if check_gpus and selection.kind == "cuda":
        check_gpus_exist(cuda_visible_devices, device_count)
    return selection
