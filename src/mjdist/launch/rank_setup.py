"""What every rank sets up first, for training and for ``mjdist.launch``: device, threads and seeds.

Apart from torch and numpy it imports nothing heavy, so ranks of a launched function do not pay for the
simulation and RL imports (seconds each) that only training needs.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from mjdist.launch.context import RankContext
from mjdist.launch.plan import LaunchPlan


def pin_rank_to_device(plan: LaunchPlan, ctx: RankContext) -> None:
    """Set the rank's torch device (before any CUDA work), its thread count and its seeds."""
    if plan.torch_threads is not None:
        torch.set_num_threads(plan.torch_threads)
    if ctx.device.startswith("cuda"):
        torch.cuda.set_device(ctx.device)
    random.seed(ctx.seed)
    np.random.seed(ctx.seed)
    torch.manual_seed(ctx.seed)
