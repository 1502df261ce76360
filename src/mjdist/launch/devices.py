"""Which devices (CUDA GPUs or CPU workers) a job uses: the request, parsed once from the flags or from Python
values, resolved against a :class:`~mjdist.launch.machine.Machine`.

Pure: every input is an argument, so the plan can be computed and tested on a machine without GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mjdist.errors import UsageError
from mjdist.launch.machine import Machine

_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_CPU_WORDS = frozenset({"none", "cpu"})

GpuIds = int | str | Sequence[int | str] | None
"""``gpu_ids`` of the Python API: ``()`` (the default: GPU 0 if one is visible, else the CPU), ``None`` (the CPU),
``"all"``, one id, or ids."""
GpuRequest = Literal["default", "cpu", "all"] | tuple[int, ...]
"""GPUs asked for: the default choice, the CPU, every visible GPU, or visible indices in rank order."""


class DeviceSelectionError(UsageError):
    """Device flags or CUDA_VISIBLE_DEVICES that cannot be resolved; the message is one line."""


@dataclass(frozen=True)
class DeviceRequest:
    """``--gpu-ids`` and ``--cpu-workers`` (or the API's ``gpu_ids`` and ``cpu_workers``), parsed and checked."""

    gpus: GpuRequest = "default"
    cpu_workers: int | Literal["auto"] | None = None
    """CPU worker processes, 'auto' (one per usable core), or None (not asked for)."""

    @classmethod
    def from_flags(cls, gpu_ids: Sequence[str], cpu_workers: str | None) -> DeviceRequest:
        """The request the command line's strings make; a DeviceSelectionError for a bad one."""
        return cls(_gpu_request(list(gpu_ids)), None if cpu_workers is None else _cpu_workers(cpu_workers))

    @classmethod
    def from_values(cls, gpu_ids: GpuIds, cpu_workers: int | str | None) -> DeviceRequest:
        """The request Python values make (``None``, ``"all"``, ``0``, ``[0, 1]``, ``4``, ``"auto"``)."""
        if gpu_ids is None:
            gpus: GpuRequest = "cpu"
        elif isinstance(gpu_ids, Sequence) and not isinstance(gpu_ids, str):
            gpus = _gpu_request(list(gpu_ids))
        else:
            gpus = _gpu_request([gpu_ids])
        return cls(gpus, None if cpu_workers is None else _cpu_workers(cpu_workers))

    @property
    def gpu_flag(self) -> str:
        """The request as the flag a user would give (for messages), e.g. ``--gpu-ids 0 1``."""
        if self.gpus == "default":
            return "--gpu-ids"
        if self.gpus == "cpu":
            return "--gpu-ids None"
        if self.gpus == "all":
            return "--gpu-ids all"
        return "--gpu-ids " + " ".join(map(str, self.gpus))


@dataclass(frozen=True)
class DeviceSelection:
    """The devices a job runs on: one CUDA GPU per rank, or ``world_size`` CPU workers."""

    kind: Literal["cuda", "cpu"]
    visible_indices: tuple[int, ...]
    physical_gpus: tuple[str, ...]
    world_size: int
    notice: str | None = None


def _gpu_request(gpu_ids: list[int | str]) -> GpuRequest:
    """'default' (nothing given), 'all', 'cpu' (for None/none/cpu), or the distinct non-negative ids in user order."""
    if not gpu_ids:
        return "default"
    for token in gpu_ids:
        word = str(token).lower()
        if word == "all" or word in _CPU_WORDS:
            if len(gpu_ids) > 1:
                raise DeviceSelectionError(
                    f"--gpu-ids {token} cannot be combined with other values; give --gpu-ids {token} on its own"
                )
            return "all" if word == "all" else "cpu"
    ids: list[int] = []
    for token in gpu_ids:
        gpu_id = _gpu_id(token)
        if gpu_id in ids:
            raise DeviceSelectionError(
                f"GPU id {gpu_id} is given twice in --gpu-ids; list each GPU once (one rank per GPU)"
            )
        ids.append(gpu_id)
    return tuple(ids)


def _gpu_id(token: int | str) -> int:
    text = str(token)
    if isinstance(token, bool) or not (isinstance(token, int) or _DIGITS.fullmatch(text) or _NEGATIVE.fullmatch(text)):
        raise DeviceSelectionError(
            f"{text!r} is not a GPU id; use integers like --gpu-ids 0 1, or 'all', or 'None' for CPU"
        )
    if int(text) < 0:
        raise DeviceSelectionError(f"GPU id {text} is negative; GPU ids are indices 0..N-1 into the visible GPUs")
    return int(text)


def _cpu_workers(value: int | str) -> int | Literal["auto"]:
    """'auto', or a positive integer (a literal, from the command line)."""
    text = str(value)
    if text.lower() == "auto":
        return "auto"
    if not isinstance(value, bool) and (_DIGITS.fullmatch(text) or _NEGATIVE.fullmatch(text)):
        workers = int(text)
        if workers < 1:
            raise DeviceSelectionError(f"--cpu-workers must be at least 1, got {workers}")
        return workers
    raise DeviceSelectionError(f"--cpu-workers takes a positive integer or 'auto', got {text!r}")


def check_gpus_exist(machine: Machine) -> None:
    """Before training (not for --dry-run, which plans for other machines): every visible entry must exist.

    CUDA drops entries it cannot find, so torch then sees fewer devices than CUDA_VISIBLE_DEVICES names.
    """
    named = machine.visible
    if machine.on_mig:
        named = named[:1]  # CUDA enumerates only the first MIG instance a process names
    if machine.gpu_count < len(named):
        raise DeviceSelectionError(
            f"CUDA_VISIBLE_DEVICES={machine.cuda_visible_devices!r} names {len(named)} GPU(s), but torch sees only "
            f"{machine.gpu_count} on this machine; name GPUs that exist (nvidia-smi -L lists them)"
        )


def resolve_devices(request: DeviceRequest, machine: Machine) -> DeviceSelection:
    """Resolve the request against the machine's visible GPUs; raise DeviceSelectionError if it cannot work."""
    workers = max(machine.usable_cores, 1) if request.cpu_workers == "auto" else request.cpu_workers
    visible = machine.visible
    if request.gpus == "default":
        return _default_selection(workers, machine)
    if request.gpus == "cpu":
        return _cpu_selection(workers or 1)
    flag = request.gpu_flag
    if workers is not None:
        raise DeviceSelectionError(
            f"--cpu-workers only applies to CPU training; it cannot be combined with {flag}. "
            f"Use --gpu-ids None --cpu-workers {request.cpu_workers}"
        )
    if not visible:
        raise DeviceSelectionError(
            f"{flag} needs a GPU, but none is visible ({_describe_visibility(machine)}); use --gpu-ids None for the CPU"
        )
    if request.gpus == "all":
        indices = tuple(range(len(visible)))
    else:
        indices = request.gpus
        _check_in_range(indices, machine)
    _check_mig(indices, machine, flag)
    return DeviceSelection(
        kind="cuda",
        visible_indices=indices,
        physical_gpus=tuple(visible[i] for i in indices),
        world_size=len(indices),
    )


def _default_selection(workers: int | None, machine: Machine) -> DeviceSelection:
    """No --gpu-ids: CPU if asked for (--cpu-workers or CUDA_VISIBLE_DEVICES=''), else GPU 0, else CPU."""
    if workers is not None:
        return _cpu_selection(workers)
    if machine.cuda_visible_devices == "":
        return _cpu_selection(1)
    if machine.visible:
        return DeviceSelection(kind="cuda", visible_indices=(0,), physical_gpus=machine.visible[:1], world_size=1)
    notice = (
        f"No GPU visible ({_describe_visibility(machine)}): training on the CPU. Use --cpu-workers N to use N cores."
    )
    return DeviceSelection(kind="cpu", visible_indices=(), physical_gpus=(), world_size=1, notice=notice)


def _cpu_selection(workers: int) -> DeviceSelection:
    return DeviceSelection(kind="cpu", visible_indices=(), physical_gpus=(), world_size=workers)


def _check_in_range(indices: tuple[int, ...], machine: Machine) -> None:
    n_visible = len(machine.visible)
    for gpu_id in indices:
        if gpu_id >= n_visible:
            valid = "the only valid id is 0" if n_visible == 1 else f"valid ids are 0..{n_visible - 1}"
            raise DeviceSelectionError(
                f"GPU id {gpu_id} is out of range: {_gpus_visible(n_visible)} ({_describe_visibility(machine)}), "
                f"{valid}"
            )


def _check_mig(indices: tuple[int, ...], machine: Machine, flag: str) -> None:
    """A CUDA process sees one MIG instance at most: several cannot train in one job. One selected instance
    trains wherever it stands in CUDA_VISIBLE_DEVICES while this process can still narrow the variable to it (CUDA
    not started yet); after CUDA started, only the first instance named is visible."""
    if not machine.on_mig:
        return
    if len(indices) > 1:
        raise DeviceSelectionError(
            f"{flag} selects {len(indices)} devices among MIG instances, but a CUDA process can use only one MIG "
            "instance, so one job cannot train on several; start one job per MIG instance "
            "(CUDA_VISIBLE_DEVICES=<one MIG UUID> --gpu-ids 0), or use whole GPUs"
        )
    if indices[0] != 0 and machine.cuda_initialized:
        raise DeviceSelectionError(
            f"{flag} selects MIG instance {machine.visible[indices[0]]}, but CUDA already started in this process "
            "and sees only the first MIG instance in CUDA_VISIBLE_DEVICES; select it before using CUDA, or put it "
            "first in CUDA_VISIBLE_DEVICES and use --gpu-ids 0"
        )


def _gpus_visible(n: int) -> str:
    return "1 GPU is visible" if n == 1 else f"{n} GPUs are visible"


def _describe_visibility(machine: Machine) -> str:
    if machine.cuda_visible_devices is None:
        devices = "device" if machine.gpu_count == 1 else "devices"
        return f"CUDA_VISIBLE_DEVICES is unset; torch sees {machine.gpu_count} CUDA {devices}"
    return f"CUDA_VISIBLE_DEVICES={machine.cuda_visible_devices!r}"


def check_cpu_workers(selection: DeviceSelection, machine: Machine, oversubscribe: bool) -> None:
    """Refuse more CPU workers than usable cores (each would get a fraction of one), unless asked for."""
    if selection.kind == "cpu" and selection.world_size > machine.usable_cores and not oversubscribe:
        raise DeviceSelectionError(
            f"--cpu-workers {selection.world_size} is more than the {machine.usable_cores} core(s) this process may "
            "use; use --cpu-workers auto, or add --oversubscribe to start them anyway"
        )
