"""``mjdist.launch(fn)``: run a function on every rank mjdist resolves, with the set-up training ranks get.

Kept free of heavy imports: ``import mjdist`` binds :func:`launch`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mjdist.launch.context import RankContext
    from mjdist.launch.devices import GpuIds

T = TypeVar("T")


def launch(
    fn: Callable[..., T],
    *args: Any,
    gpu_ids: GpuIds = (),
    cpu_workers: int | str | None = None,
    hosts: str | Sequence[str] = (),
    ssh_config: str | os.PathLike[str] | None = None,
    host_check: bool = True,
    seed: int = 0,
    torchrunx_log_dir: str | None = None,
    **kwargs: Any,
) -> list[T]:
    """Call ``fn(*args, **kwargs)`` on every rank and return each rank's value, in rank order.

    Ranks are resolved like ``train``'s: one per GPU (NCCL), ``cpu_workers`` CPU processes (gloo), or this
    process alone. On each rank, before ``fn`` runs: the torch device is set (``torch.cuda.set_device``), Warp's
    default device is the rank's (``wp.ScopedDevice``), a ``torch.distributed`` process group is ready (one of
    size 1 in this process), ``random``, numpy and torch are seeded with ``seed + rank``, and a CPU worker uses one
    torch thread unless OMP_NUM_THREADS says otherwise. ``torch.distributed.get_rank()`` tells ``fn`` its rank
    and ``warp.get_device()`` its device.

    Several ranks run in processes started through torchrunx, so ``fn``, its arguments and its return value
    must pickle (cloudpickle: functions of a script's ``__main__`` are fine), and ``fn``'s module must be
    importable there. Rank 0's INFO records and the other ranks' warnings reach this console.

    ``hosts`` starts the ranks on several machines over SSH (torchrunx), each with the ranks ``gpu_ids`` and
    ``cpu_workers`` give one host, in host order; ``fn`` must then be importable there as well. These options are
    keyword arguments of this function, so every other keyword argument goes to ``fn``.

    Args:
        fn: The function each rank calls.
        *args: Positional arguments of ``fn``.
        gpu_ids: GPUs as indices into CUDA_VISIBLE_DEVICES (``0``, ``[0, 1]``, ``"all"``), ``None`` for the CPU;
            the default ``()`` takes GPU 0 if one is visible, else the CPU.
        cpu_workers: CPU worker processes (one rank each), a number or ``"auto"``; CPU only.
        hosts: Hosts to start ranks on over SSH (the first must be reachable from every host), or ``"auto"``
            for the SLURM allocation; default: this host only. See docs/cluster.md.
        ssh_config: OpenSSH client config file used to reach ``hosts`` (default: ~/.ssh/config).
        host_check: Check ``hosts`` first: each resolves and accepts a non-interactive SSH login that runs this
            Python, in this working directory, with mjdist importable (False skips it).
        seed: Base seed; rank r is seeded with ``seed + r``.
        torchrunx_log_dir: A directory for per-rank log files of a multi-rank launch (default: none).
            The TORCHRUNX_LOG_DIR environment variable, if set, wins.
        **kwargs: Keyword arguments of ``fn``.

    Returns:
        ``[fn's value on rank 0, on rank 1, ...]``.

    Raises:
        UsageError: Unusable ``gpu_ids``/``cpu_workers``/``hosts`` (a DeviceSelectionError; a host that does not
            resolve or answer SSH), or a log directory that cannot be made; nothing was started.
        RankFailedError: A rank raised or was killed; ``.rank`` names it (the first one that failed). The other
            ranks were stopped at once and no process of the launch survives.
        KeyboardInterrupt: Ctrl-C or SIGTERM; every rank was stopped.
    """
    from mjdist.launch.devices import DeviceRequest, check_gpus_exist, resolve_devices
    from mjdist.launch.hosts import resolve_hosts
    from mjdist.launch.machine import read_machine
    from mjdist.launch.plan import plan_ranks
    from mjdist.launch.preflight import check_launch

    request = DeviceRequest.from_values(gpu_ids, cpu_workers)
    machine = read_machine()
    selection = resolve_devices(request, machine)
    if selection.kind == "cuda":
        check_gpus_exist(machine)
    ssh_config_path = None if ssh_config is None else Path(ssh_config)
    host_names = resolve_hosts((hosts,) if isinstance(hosts, str) else tuple(hosts), ssh_config_path)
    name = getattr(fn, "__qualname__", type(fn).__name__)
    plan = plan_ranks(name, selection, host_names, seed, os.environ, ssh_config_path, torchrunx_log_dir)
    check_launch(plan, os.environ, host_check)
    from mjdist.launch.launcher import run_ranks  # torch and torchrunx: only once the input was checked

    return run_ranks(plan, _function_rank, fn, args, kwargs)


def _function_rank(ctx: RankContext, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """One rank of a launch, set up as training ranks are; with a process group (of one in a single process)."""
    with _process_group(ctx.device):
        return fn(*args, **kwargs)


@contextlib.contextmanager
def _process_group(device: str) -> Iterator[None]:
    """The group torchrunx made for several ranks; for this process alone, a group of one, removed afterwards."""
    import torch.distributed as dist

    from mjdist.launch.hosts import LOCALHOST
    from mjdist.launch.loopback import gloo_on_loopback

    if dist.is_initialized():
        yield
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    with gloo_on_loopback((LOCALHOST,)):  # a group of one has no peers: its gloo socket need not leave this host
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
