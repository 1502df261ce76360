"""Train one policy per learning rate through ``mjdist.train`` and print final reward against learning rate.

    uv run python examples/sweep_learning_rate.py                      # 3 runs, about 2-3 minutes on 2 CPU cores
    uv run python examples/sweep_learning_rate.py --learning-rates 1e-4 1e-3 1e-2 --iterations 50 --gpu-ids 0

Each run is a normal mjdist run (under --log-root, default logs/sweep), trained one after another in this
process (or on the GPUs/CPU workers given). The defaults (cartpole-balance, 256 environments, 30 iterations)
are sized for a 2-core CPU; the reward is the mean return of rank 0's last 100 episodes.
"""

from __future__ import annotations

import argparse
import logging

import mjdist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cartpole-balance")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-steps-per-env", type=int, default=24)
    parser.add_argument("--gpu-ids", nargs="*", default=None, help="GPU ids; omit for the CPU")
    parser.add_argument("--cpu-workers", default=None, help="CPU worker processes (a number or 'auto')")
    parser.add_argument("--log-root", default="logs/sweep")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    rows = []
    for learning_rate in args.learning_rates:
        result = mjdist.train(
            args.task,
            gpu_ids=[int(gpu) for gpu in args.gpu_ids] if args.gpu_ids else None,
            cpu_workers=args.cpu_workers,
            env={"num_envs": args.num_envs},
            agent={
                "max_iterations": args.iterations,
                "num_steps_per_env": args.num_steps_per_env,
                "logger": "none",
                "algorithm": {"learning_rate": learning_rate},
            },
            log_root=args.log_root,
            run_name=f"lr{learning_rate:g}",
        )
        rows.append((learning_rate, result))
        print(f"finished learning rate {learning_rate:g} in {result.wall_time_s:.1f} s: {result.run_dir}", flush=True)

    print(f"\n{'learning rate':>13} | {'mean reward':>11} | {'episode length':>14} | {'env-steps/s':>11}")
    for learning_rate, result in rows:
        reward = "n/a" if result.mean_reward is None else f"{result.mean_reward:.2f}"
        length = "n/a" if result.mean_episode_length is None else f"{result.mean_episode_length:.1f}"
        speed = "n/a" if result.env_steps_per_s is None else f"{result.env_steps_per_s:,.0f}"
        print(f"{learning_rate:>13g} | {reward:>11} | {length:>14} | {speed:>11}")


if __name__ == "__main__":
    main()
