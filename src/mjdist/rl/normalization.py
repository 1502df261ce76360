"""rsl_rl's running observation normalizer, with its cross-rank statistics merged in one collective.

rsl_rl 5.5 updates each normalizer once per PPO update, from all observations of the rollout, and in a process
group ``EmpiricalNormalization.update`` makes three blocking all-reduces (count, mean, variance). One all-gather
of each rank's ``(count, mean, variance)`` carries the same information.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from rsl_rl.modules.normalization import EmpiricalNormalization
from torch import nn


class GatheredNormalization(EmpiricalNormalization):
    """``EmpiricalNormalization`` whose distributed update gathers every rank's batch statistics at once.

    Every rank merges the gathered statistics in rank order, so the normalizers stay bit-identical across
    ranks; the merged mean and variance are those of the union of the ranks' batches, as in rsl_rl.
    """

    @torch.jit.unused
    def update(self, x: torch.Tensor) -> None:
        """Fold the batch ``x`` (every rank's, in a process group) into the running mean and variance."""
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            super().update(x)
            return
        if not self.training or (self.until is not None and self.count >= self.until):
            return
        local = torch.cat(
            (
                torch.tensor([x.shape[0]], dtype=x.dtype, device=x.device),
                x.mean(dim=0),
                x.var(dim=0, unbiased=False),
            )
        )
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        stats = torch.stack(gathered)
        counts, means, variances = stats[:, :1], stats[:, 1 : 1 + x.shape[1]], stats[:, 1 + x.shape[1] :]
        total = counts.sum()
        mean_x = ((counts * means).sum(dim=0) / total).unsqueeze(0)
        var_x = ((counts * (variances + (means - mean_x).square())).sum(dim=0) / total).unsqueeze(0)

        count_x = total.round().to(self.count.dtype)
        self.count += count_x
        rate = count_x / self.count
        delta_mean = mean_x - self._mean
        self._mean += rate * delta_mean
        self._var += rate * (var_x - self._var + delta_mean * (mean_x - self._mean))
        self._std = torch.sqrt(self._var)


def gather_normalizer_statistics(*models: nn.Module) -> None:
    """Make the observation normalizers of rsl_rl ``models`` merge ranks' statistics in one collective.

    The normalizer keeps its buffers, state-dict keys and checkpoints; only its update changes.
    """
    for model in models:
        normalizer = getattr(model, "obs_normalizer", None)
        if type(normalizer) is EmpiricalNormalization:
            normalizer.__class__ = GatheredNormalization
