"""Which devices a benchmark runs on, and the `train` flags that select them for a number of ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from mjdist.launch.devices import DeviceSelection, DeviceSelectionError, cuda_device_count, resolve_devices


@dataclass(frozen=True)
class BenchDevices:
    """``kind`` 'cuda' (one GPU per rank) or 'cpu' (one CPU worker process per rank, one process for one rank)."""

    kind: Literal["cpu", "cuda"]

    @property
    def simulation_device(self) -> str:
        """Where the physics and env benchmarks simulate: GPU 0 or the CPU."""
        return "cuda:0" if self.kind == "cuda" else "cpu"

    @property
    def torch_threads_per_rank(self) -> int | None:
        """torch threads of each rank in the training benchmarks: one per CPU rank, a single rank included, so
        that N CPU ranks are compared with one of the same kind (None on GPUs: torch's default)."""
        return 1 if self.kind == "cpu" else None

    def train_flags(self, ranks: int) -> tuple[str, ...]:
        """`train` flags for ``ranks`` ranks on this kind of device."""
        gpu_ids, workers = self._request(ranks)
        return ("--gpu-ids", *gpu_ids, *(("--cpu-workers", workers) if workers is not None else ()))

    def selection(self, ranks: int, first_gpu: int = 0) -> DeviceSelection:
        """The device selection `train` makes from :meth:`train_flags` on this machine; on GPUs, ``ranks`` GPUs
        from ``first_gpu`` on (N independent single-rank runs use one GPU each)."""
        gpu_ids, workers = self._request(ranks, first_gpu)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return resolve_devices(gpu_ids, workers, visible, cuda_device_count(visible), len(os.sched_getaffinity(0)))

    def _request(self, ranks: int, first_gpu: int = 0) -> tuple[tuple[str, ...], str | None]:
        """(--gpu-ids, --cpu-workers) for ``ranks`` ranks."""
        if self.kind == "cuda":
            return tuple(str(gpu) for gpu in range(first_gpu, first_gpu + ranks)), None
        return ("None",), str(ranks) if ranks > 1 else None


def bench_devices(choice: Literal["auto", "cpu", "cuda"], ranks: int) -> BenchDevices:
    """Resolve ``--device`` for up to ``ranks`` ranks; DeviceSelectionError (one line) if they do not exist."""
    if choice == "auto":
        choice = "cuda" if cuda_device_count(os.environ.get("CUDA_VISIBLE_DEVICES")) > 0 else "cpu"
    devices = BenchDevices(choice)
    try:
        devices.selection(ranks)
    except DeviceSelectionError as error:
        raise DeviceSelectionError(f"--device {choice} with --ranks {ranks}: {error}") from error
    return devices
