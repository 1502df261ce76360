"""Resolve which devices (CUDA GPUs or CPU workers) a training job uses, from CLI flags and the environment.

Pure: every input is an argument, so the plan can be computed and tested on a machine without GPUs.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mjdist.errors import UsageError

_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_CPU_WORDS = frozenset({"none", "cpu"})

_GpuRequest = Literal["all", "cpu"] | tuple[int, ...]


class DeviceSelectionError(UsageError):
    """Device flags or CUDA_VISIBLE_DEVICES that cannot be resolved; the message is one line."""


@dataclass(frozen=True)
class DeviceSelection:
    """The devices a job runs on: one CUDA GPU per rank, or `world_size` CPU workers."""

    kind: Literal["cuda", "cpu"]
    visible_indices: tuple[int, ...]
    physical_gpus: tuple[str, ...]
    world_size: int
    notice: str | None = None


def parse_visible_devices(value: str | None, device_count: int) -> list[str]:
    """The visible GPU list as the CUDA runtime reads CUDA_VISIBLE_DEVICES (unset: all `device_count`).

    Entries are stripped and kept as strings (ids, UUIDs, MIG ids); an empty or negative entry ends the list.
    """
    if value is None:
        return [str(i) for i in range(device_count)]
    devices: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices


def cuda_device_count(cuda_visible_devices: str | None) -> int:
    """GPUs torch sees; torch is imported only when CUDA_VISIBLE_DEVICES leaves any to count."""
    if cuda_visible_devices == "":
        return 0
    import torch

    return torch.cuda.device_count()


def check_gpus_exist(cuda_visible_devices: str | None, device_count: int) -> None:
    """Before training (not for --dry-run, which plans for other machines): every visible entry must exist.

    CUDA drops entries it cannot find, so torch then sees fewer devices than CUDA_VISIBLE_DEVICES names.
    """
    named = parse_visible_devices(cuda_visible_devices, device_count)
    if any(_is_mig(entry) for entry in named):
        named = named[:1]  # CUDA enumerates only the first MIG instance a process names
    if device_count < len(named):
        raise DeviceSelectionError(
            f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} names {len(named)} GPU(s), but torch sees only "
            f"{device_count} on this machine; name GPUs that exist (nvidia-smi -L lists them)"
        )


def resolve_devices(
    gpu_ids: Sequence[str] | None,
    cpu_workers: str | None,
    cuda_visible_devices: str | None,
    device_count: int,
    cpu_count: int,
) -> DeviceSelection:
    """Resolve `--gpu-ids` / `--cpu-workers` against the visible GPUs; raise DeviceSelectionError if invalid."""
    workers = None if cpu_workers is None else _parse_cpu_workers(cpu_workers, cpu_count)
    visible = parse_visible_devices(cuda_visible_devices, device_count)
    if gpu_ids is None:
        return _default_selection(workers, visible, cuda_visible_devices, device_count)
    request = _parse_gpu_ids(gpu_ids)
    if request == "cpu":
        return _cpu_selection(workers or 1)
    flag = "--gpu-ids " + " ".join(gpu_ids)
    if workers is not None:
        raise DeviceSelectionError(
            f"--cpu-workers only applies to CPU training; it cannot be combined with {flag}. "
            f"Use --gpu-ids None --cpu-workers {cpu_workers}"
        )
    if not visible:
        raise DeviceSelectionError(
            f"{flag} needs a GPU, but none is visible "
            f"({_describe_visibility(cuda_visible_devices, device_count)}); use --gpu-ids None for the CPU"
        )
    if request == "all":
        indices = tuple(range(len(visible)))
    else:
        indices = request
        _check_in_range(indices, len(visible), cuda_visible_devices, device_count)
    _check_mig(indices, visible, flag)
    return DeviceSelection(
        kind="cuda",
        visible_indices=indices,
        physical_gpus=tuple(visible[i] for i in indices),
        world_size=len(indices),
    )


def _default_selection(
    workers: int | None, visible: list[str], cuda_visible_devices: str | None, device_count: int
) -> DeviceSelection:
    """No --gpu-ids: CPU if asked for (--cpu-workers or CUDA_VISIBLE_DEVICES=''), else GPU 0, else CPU."""
    if workers is not None:
        return _cpu_selection(workers)
    if cuda_visible_devices == "":
        return _cpu_selection(1)
    if visible:
        return DeviceSelection(kind="cuda", visible_indices=(0,), physical_gpus=(visible[0],), world_size=1)
    notice = (
        f"No GPU visible ({_describe_visibility(cuda_visible_devices, device_count)}): training on the CPU. "
        "Use --cpu-workers N to use N cores."
    )
    return DeviceSelection(kind="cpu", visible_indices=(), physical_gpus=(), world_size=1, notice=notice)


def _cpu_selection(workers: int) -> DeviceSelection:
    return DeviceSelection(kind="cpu", visible_indices=(), physical_gpus=(), world_size=workers)


def _parse_gpu_ids(gpu_ids: Sequence[str]) -> _GpuRequest:
    """'all', 'cpu' (for None/none/cpu), or the distinct non-negative ids in user order."""
    if not gpu_ids:
        raise DeviceSelectionError("--gpu-ids needs at least one id, or 'all', or 'None'")
    for token in gpu_ids:
        word = token.lower()
        if word == "all" or word in _CPU_WORDS:
            if len(gpu_ids) > 1:
                raise DeviceSelectionError(
                    f"--gpu-ids {token} cannot be combined with other values; give --gpu-ids {token} on its own"
                )
            return "all" if word == "all" else "cpu"
    ids: list[int] = []
    for token in gpu_ids:
        gpu_id = _parse_gpu_id(token)
        if gpu_id in ids:
            raise DeviceSelectionError(
                f"GPU id {gpu_id} is given twice in --gpu-ids; list each GPU once (one rank per GPU)"
            )
        ids.append(gpu_id)
    return tuple(ids)


def _parse_gpu_id(token: str) -> int:
    if _DIGITS.fullmatch(token):
        return int(token)
    if _NEGATIVE.fullmatch(token):
        raise DeviceSelectionError(f"GPU id {token} is negative; GPU ids are indices 0..N-1 into the visible GPUs")
    raise DeviceSelectionError(
        f"{token!r} is not a GPU id; use integers like --gpu-ids 0 1, or 'all', or 'None' for CPU"
    )


def _parse_cpu_workers(value: str, cpu_count: int) -> int:
    """'auto' -> cpu_count (at least 1), else a positive integer literal."""
    if value.lower() == "auto":
        return max(cpu_count, 1)
    if _DIGITS.fullmatch(value) or _NEGATIVE.fullmatch(value):
        workers = int(value)
        if workers < 1:
            raise DeviceSelectionError(f"--cpu-workers must be at least 1, got {workers}")
        return workers
    raise DeviceSelectionError(f"--cpu-workers takes a positive integer or 'auto', got {value!r}")


def _check_in_range(
    indices: tuple[int, ...], n_visible: int, cuda_visible_devices: str | None, device_count: int
) -> None:
    for gpu_id in indices:
        if gpu_id >= n_visible:
            valid = "the only valid id is 0" if n_visible == 1 else f"valid ids are 0..{n_visible - 1}"
            raise DeviceSelectionError(
                f"GPU id {gpu_id} is out of range: {_gpus_visible(n_visible)} "
                f"({_describe_visibility(cuda_visible_devices, device_count)}), {valid}"
            )


def _is_mig(entry: str) -> bool:
    return entry.startswith("MIG-")


def _check_mig(indices: tuple[int, ...], visible: list[str], flag: str) -> None:
    """A CUDA process sees one MIG instance at most: the first one CUDA_VISIBLE_DEVICES names."""
    if not any(_is_mig(entry) for entry in visible):
        return
    if len(indices) > 1:
        raise DeviceSelectionError(
            f"{flag} selects {len(indices)} devices among MIG instances, but a CUDA process can use only one MIG "
            "instance, so one job cannot train on several; start one job per MIG instance "
            "(CUDA_VISIBLE_DEVICES=<one MIG UUID> --gpu-ids 0), or use whole GPUs"
        )
    if indices[0] != 0:
        raise DeviceSelectionError(
            f"{flag} selects {visible[indices[0]]}, but CUDA makes only the first MIG instance in "
            "CUDA_VISIBLE_DEVICES visible; use --gpu-ids 0 with that instance first in CUDA_VISIBLE_DEVICES"
        )


def _gpus_visible(n: int) -> str:
    return "1 GPU is visible" if n == 1 else f"{n} GPUs are visible"


def _describe_visibility(cuda_visible_devices: str | None, device_count: int) -> str:
    if cuda_visible_devices is None:
        devices = "device" if device_count == 1 else "devices"
        return f"CUDA_VISIBLE_DEVICES is unset; torch sees {device_count} CUDA {devices}"
    return f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}"


def check_cpu_workers(selection: DeviceSelection, usable_cores: int, oversubscribe: bool) -> None:
    """Refuse more CPU workers than usable cores (each would get a fraction of one), unless asked for."""
    if selection.kind == "cpu" and selection.world_size > max(usable_cores, 1) and not oversubscribe:
        raise DeviceSelectionError(
            f"--cpu-workers {selection.world_size} is more than the {usable_cores} core(s) this process may use; "
            "use --cpu-workers auto, or add --oversubscribe to start them anyway"
        )
