"""Which devices a benchmark runs on, and the `train` flags that select them for a number of ranks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mjdist.launch.devices import DeviceRequest, DeviceSelection, DeviceSelectionError, resolve_devices
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.machine import Machine, read_machine
from mjdist.launch.plan import LaunchPlan, plan_ranks


@dataclass(frozen=True)
class BenchDevices:
    """``kind`` 'cuda' (one GPU per rank) or 'cpu' (one CPU worker process per rank, one process for one rank)."""

    kind: Literal["cpu", "cuda"]
    machine: Machine
    """This machine, read once."""

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
        return resolve_devices(DeviceRequest.from_flags(gpu_ids, workers), self.machine)

    def simulation_rank(self) -> LaunchPlan:
        """The in-process rank the physics and env benchmarks run in (set up as training ranks are)."""
        return plan_ranks("bench", self.selection(1), (LOCALHOST,), 0, {})

    def _request(self, ranks: int, first_gpu: int = 0) -> tuple[tuple[str, ...], str | None]:
        """(--gpu-ids, --cpu-workers) for ``ranks`` ranks."""
        if self.kind == "cuda":
            return tuple(str(gpu) for gpu in range(first_gpu, first_gpu + ranks)), None
        return ("None",), str(ranks) if ranks > 1 else None


def bench_devices(choice: Literal["auto", "cpu", "cuda"], ranks: int) -> BenchDevices:
    """Resolve ``--device`` for up to ``ranks`` ranks; DeviceSelectionError (one line) if they do not exist."""
    machine = read_machine()
    if choice == "auto":
        choice = "cuda" if machine.gpu_count > 0 else "cpu"
    devices = BenchDevices(choice, machine)
    try:
        devices.selection(ranks)
    except DeviceSelectionError as error:
        raise DeviceSelectionError(f"--device {choice} with --ranks {ranks}: {error}") from error
    return devices
