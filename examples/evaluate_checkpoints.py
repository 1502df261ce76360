"""Score every checkpoint of a run with ``mjdist.launch``: the checkpoints are spread over the ranks, each rank
plays its share through ``mjdist.play`` on its own device, and rank order gives the table back.

    uv run train cartpole-balance                                       # a run to score (model_0 ... model_99)
    uv run python examples/evaluate_checkpoints.py logs/rsl_rl/cartpole_balance/<run>   # 2 CPU workers, ~1 min
    uv run python examples/evaluate_checkpoints.py <run> --gpu-ids 0 1 --num-envs 256   # one rank per GPU

The defaults (2 CPU workers; per checkpoint 16 environments until 16 episodes finished) suit a 2-core CPU.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mjdist

Score = tuple[str, float | None, float | None]
"""(checkpoint name, mean return, mean episode length)."""


def score(checkpoints: list[Path], task: str, num_envs: int, num_episodes: int) -> list[Score]:
    """Runs on every rank: play this rank's share of the checkpoints on the rank's device."""
    import torch.distributed as dist
    import warp as wp

    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = wp.get_device()
    gpu_ids = device.ordinal if device.is_cuda else None
    scores = []
    for checkpoint in checkpoints[rank::world_size]:
        summary = mjdist.play(
            task, checkpoint=checkpoint, num_envs=num_envs, num_episodes=num_episodes, gpu_ids=gpu_ids
        )
        scores.append((checkpoint.name, summary.mean_return, summary.mean_length))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory with model_<iteration>.pt checkpoints")
    parser.add_argument("--task", default="cartpole-balance")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-episodes", type=int, default=16, help="episodes to finish per checkpoint")
    parser.add_argument("--gpu-ids", nargs="*", default=None, help="GPU ids, one rank each; omit for the CPU")
    parser.add_argument("--cpu-workers", default="2", help="CPU worker processes (a number or 'auto')")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    checkpoints = sorted(args.run.glob("model_*.pt"), key=lambda path: int(path.stem.split("_")[1]))
    if not checkpoints:
        parser.error(f"{args.run} has no model_<iteration>.pt checkpoints")
    if args.gpu_ids:
        devices = {"gpu_ids": [int(gpu) for gpu in args.gpu_ids]}
    else:
        devices = {"gpu_ids": None, "cpu_workers": args.cpu_workers}
    per_rank = mjdist.launch(score, checkpoints, args.task, args.num_envs, args.num_episodes, **devices)

    scores = {
        name: (mean_return, mean_length) for rank_scores in per_rank for name, mean_return, mean_length in rank_scores
    }
    print(f"{len(checkpoints)} checkpoints scored on {len(per_rank)} ranks, {args.num_episodes} episodes each")
    print(f"{'checkpoint':>16} | {'mean return':>11} | {'episode length':>14}")
    for checkpoint in checkpoints:
        mean_return, mean_length = scores[checkpoint.name]
        shown = ["n/a" if value is None else f"{value:.2f}" for value in (mean_return, mean_length)]
        print(f"{checkpoint.name:>16} | {shown[0]:>11} | {shown[1]:>14}")


if __name__ == "__main__":
    main()
