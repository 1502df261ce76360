"""The one-collective observation normalizer: two real gloo ranks agree bit for bit, and match rsl_rl's statistics
of the union of their batches."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rsl_rl.modules.normalization import EmpiricalNormalization

from mjdist.rl.normalization import GatheredNormalization, gather_normalizer_statistics

DIM = 5
STEPS = 4


def batches(rank: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(rank)
    return [3.0 + (rank + 1) * torch.randn(16 + 8 * rank, DIM, generator=generator) for _ in range(STEPS)]


def _rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    normalizer = GatheredNormalization(DIM)
    for batch in batches(rank):
        normalizer.update(batch)
    torch.save(normalizer.state_dict(), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_ranks_match_rsl_rl_on_the_union_of_their_batches(tmp_path: Path) -> None:
    out = str(tmp_path / "state")
    mp.spawn(_rank, args=(str(tmp_path / "store"), out), nprocs=2)
    rank0, rank1 = (torch.load(f"{out}.{rank}") for rank in (0, 1))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    reference = EmpiricalNormalization(DIM)
    for batch0, batch1 in zip(batches(0), batches(1), strict=True):
        reference.update(torch.cat((batch0, batch1)))
    for key, value in reference.state_dict().items():
        assert torch.allclose(rank0[key].to(value.dtype), value, rtol=1e-5, atol=1e-5), key


def test_models_keep_their_buffers_and_checkpoint_keys() -> None:
    model = torch.nn.Module()
    model.obs_normalizer = EmpiricalNormalization(DIM)
    model.obs_normalizer.update(torch.randn(8, DIM))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    gather_normalizer_statistics(model)
    assert type(model.obs_normalizer) is GatheredNormalization
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)
