"""What every rank does first, for training, ``play`` and ``mjdist.launch``: :func:`enter_device`.

It is the one place that sets up a rank's process: the plan's environment variables (MuJoCo's rendering choice),
the narrowing of CUDA_VISIBLE_DEVICES to a selected MIG instance, triton before Mesa, Warp's log level, torch's
threads, the torch device, the seeds, and Warp's device scope.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import random
from collections.abc import Iterator, Mapping

from mjdist.launch.context import RankContext
from mjdist.launch.identity import RankIdentity
from mjdist.launch.plan import LaunchPlan


@contextlib.contextmanager
def enter_device(plan: LaunchPlan, identity: RankIdentity | None = None) -> Iterator[RankContext]:
    """Set this process up as its rank of ``plan`` (``identity``: read from the environment by default) and run the
    body on the rank's device; the variables it set are restored when the body ends, however it ends."""
    ctx = RankContext.of(plan, identity or RankIdentity.read())
    with environment(plan.rank_variables):  # torchrunx already gave its workers these; a single process needs them
        load_triton_before_mesa()
        import numpy as np
        import torch
        import warp as wp

        wp.config.log_level = wp.LOG_WARNING
        if plan.torch_threads is not None:
            torch.set_num_threads(plan.torch_threads)
        if ctx.device.startswith("cuda"):
            torch.cuda.set_device(ctx.device)
        random.seed(ctx.seed)
        np.random.seed(ctx.seed)
        torch.manual_seed(ctx.seed)
        with wp.ScopedDevice(ctx.device):
            yield ctx


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in ``os.environ`` for the body, and the previous values back afterwards."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_triton_before_mesa() -> None:
    """Mesa's OSMesa and triton (imported by torch._dynamo, which tensordict imports) each carry their own LLVM, and
    triton's library crashes while loading if Mesa's came first; so with MUJOCO_GL=osmesa, triton, when installed,
    is loaded before mujoco is."""
    if os.environ.get("MUJOCO_GL") == "osmesa" and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")
