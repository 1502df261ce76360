"""Once-per-iteration health checks: non-finite losses or parameters stop training, diverged worlds are counted.

rsl_rl checks every environment step's observations, rewards and dones for NaN (a host sync per step on a GPU);
mjdist turns that off (``check_for_nan: False``) and instead resets worlds whose physics diverges inside the
environment (:meth:`mjdist.envs.core.MjWarpEnv.step`) and checks the PPO update's outcome here, once per
iteration, before the iteration can be saved.
"""

from __future__ import annotations

import logging
import math

import torch

from mjdist.errors import TrainingFailure

log = logging.getLogger(__name__)

DIVERGED_WORLDS_TAG = "Episode_Termination/diverged_worlds"
"""Scalar logged per iteration: worlds reset for diverging physics in that iteration, summed over ranks."""


class NonFiniteTrainingError(TrainingFailure):
    """A loss or parameter became NaN/Inf; nothing from that iteration is saved."""


def non_finite_parameters(*modules: torch.nn.Module) -> torch.Tensor:
    """A 0-d bool tensor (no host sync): whether any parameter or buffer of ``modules`` is NaN or infinite."""
    tensors = [t for module in modules for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return ~torch.stack([torch.isfinite(t).all() for t in tensors]).all()


class IterationHealth:
    """What the end-of-iteration check needs: the update's losses and the running count of diverged worlds."""

    def __init__(self) -> None:
        self.losses: dict[str, float] = {}
        self.diverged_worlds = 0

    def bad_losses(self) -> list[str]:
        """This rank's non-finite mean losses of the last update, as ``name=value``."""
        return [f"{name}={value}" for name, value in sorted(self.losses.items()) if not math.isfinite(value or 0.0)]

    def non_finite_cause(self, iteration: int, bad_parameters: bool, bad_losses: bool) -> str | None:
        """The one-line error for a non-finite iteration (flags from all ranks), or None if it is healthy."""
        if not bad_losses and not bad_parameters:
            return None
        what = []
        if bad_losses:
            what.append(f"loss {', '.join(self.bad_losses())}" if self.bad_losses() else "loss (on another rank)")
        if bad_parameters:
            what.append("parameters")
        return (
            f"non-finite {' and '.join(what)} at iteration {iteration + 1} (is the learning rate too high?); "
            "stopped without saving them"
        )

    def record_diverged(self, worlds: int, iteration: int, writer: object) -> None:
        """Log the worlds reset in this iteration (all ranks) on rank 0's console and TensorBoard/wandb."""
        self.diverged_worlds += worlds
        if writer is None:
            return
        writer.add_scalar(DIVERGED_WORLDS_TAG, worlds, iteration)  # type: ignore[attr-defined]
        if worlds:
            log.warning(
                "iteration %d: %d world(s) reset after their physics diverged (NaN/Inf or beyond --env.max-abs-qvel); "
                "%d in this run so far",
                iteration + 1, worlds, self.diverged_worlds,
            )  # fmt: skip
