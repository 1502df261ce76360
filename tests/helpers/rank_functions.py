"""Functions for ``mjdist.launch`` tests, importable on the ranks (tests/helpers is on their PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def report(base: float, scale: float = 1.0) -> dict:
    """What the rank sees: its rank, devices and seed, and an all-reduce over the ranks."""
    import torch
    import torch.distributed as dist
    import warp as wp

    total = torch.tensor([base + dist.get_rank()])
    dist.all_reduce(total)
    return {
        "rank": dist.get_rank(),
        "world_size": dist.get_world_size(),
        "warp_device": str(wp.get_device()),
        "seed": torch.initial_seed(),
        "sum": total.item() * scale,
        "pid": os.getpid(),
    }


def fail_on(failing_rank: int, stamp: str) -> int:
    """``failing_rank`` raises at once (after stamping the time); the others would work for two minutes."""
    import torch.distributed as dist

    if dist.get_rank() == failing_rank:
        Path(stamp).write_text(str(time.time()))
        raise ValueError(f"no luck on rank {failing_rank}")
    time.sleep(120)
    return dist.get_rank()


def nap(stamp_dir: str) -> int:
    """Write ``<stamp_dir>/<rank>`` once running, then sleep for two minutes (to be interrupted)."""
    import torch.distributed as dist

    (Path(stamp_dir) / str(dist.get_rank())).write_text(str(os.getpid()))
    time.sleep(120)
    return dist.get_rank()


def wait_for_go(stamp_dir: str) -> dict:
    """Write ``<stamp_dir>/ready-<rank>``, wait (up to two minutes) for ``<stamp_dir>/go``, then log a warning
    from every rank and return the rank, an all-reduced sum over the ranks and the rank's gloo interface."""
    import logging

    import torch
    import torch.distributed as dist

    rank = dist.get_rank()
    (Path(stamp_dir) / f"ready-{rank}").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not (Path(stamp_dir) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    total = torch.tensor([1.0])
    dist.all_reduce(total)
    logging.getLogger("rank_functions").warning("rank %d went on", rank)
    return {"rank": rank, "sum": total.item(), "gloo_interface": os.environ.get("GLOO_SOCKET_IFNAME")}


def stubborn_nap(stamp_dir: str) -> int:
    """Like :func:`nap`, but the first stop request (a KeyboardInterrupt on the rank) only writes
    ``<stamp_dir>/<rank>.asked`` and naps on, as a rank stuck in a long iteration would."""
    import torch.distributed as dist

    rank = dist.get_rank()
    (Path(stamp_dir) / str(rank)).write_text(str(os.getpid()))
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        (Path(stamp_dir) / f"{rank}.asked").write_text("")
        time.sleep(60)
    return rank
