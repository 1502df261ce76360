"""Launch the (optionally faulty) cart-pole through mjdist's real launcher and print the ranks' results.

``launch_task.py LOG_ROOT WORKERS ITERATIONS [HOST ...] [--num-envs N] [--save-interval N] [--max-restarts N]
[--timeout S] [--learning-rate LR] [--run-name NAME] [--resume auto|PATH]`` prints one JSON list of RankResult
dicts on stdout and exits like ``train``: 0 on success, 1 when a rank failed, 130 when interrupted. Like ``train``,
it writes the run's summary.json.
Faults: see faulty_task.py. It plans like ``train`` does: as one rank under torchrun-style variables, else WORKERS
CPU workers on each HOST (this host if none), reached with the SSH config file named by ``MJDIST_TEST_SSH_CONFIG``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from faulty_task import FAULTY

from mjdist.errors import RankFailedError
from mjdist.launch import launcher
from mjdist.launch.devices import DeviceRequest
from mjdist.train.config import TrainConfig
from mjdist.train.run import run_training

launcher.ENV_VARS_FOR_RANKS = (*launcher.ENV_VARS_FOR_RANKS, "MJDIST_TEST_*")  # the faults reach remote ranks too


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log_root", type=Path)
    parser.add_argument("workers")
    parser.add_argument("iterations", type=int)
    parser.add_argument("hosts", nargs="*")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--num-steps-per-env", type=int, default=FAULTY.agent.num_steps_per_env)
    parser.add_argument("--save-interval", type=int, default=5)
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=TrainConfig.timeout)
    parser.add_argument("--learning-rate", type=float, default=FAULTY.agent.algorithm.learning_rate)
    parser.add_argument("--run-name", default="")
    parser.add_argument("--resume", type=Path)
    args = parser.parse_args()
    ssh_config = os.environ.get("MJDIST_TEST_SSH_CONFIG")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    agent = FAULTY.agent
    cfg = TrainConfig(
        env=dataclasses.replace(FAULTY.env, num_envs=args.num_envs),
        agent=dataclasses.replace(
            agent,
            max_iterations=args.iterations,
            save_interval=args.save_interval,
            num_steps_per_env=args.num_steps_per_env,
            algorithm=dataclasses.replace(agent.algorithm, learning_rate=args.learning_rate, schedule="fixed"),
        ),
        log_root=args.log_root,
        run_name=args.run_name,
        resume=args.resume,
        max_restarts=args.max_restarts,
        timeout=args.timeout,
        hosts=tuple(args.hosts),
        ssh_config=Path(ssh_config) if ssh_config else None,
    )
    try:  # as the train command does, with a task that is not registered
        result = run_training(FAULTY, cfg, DeviceRequest.from_flags(("None",), args.workers))
    except KeyboardInterrupt as interrupt:
        logging.error("Interrupted: %s", interrupt)
        return 130
    except RankFailedError as failure:
        logging.error("Training failed: %s", failure)
        return 1
    print(json.dumps([dataclasses.asdict(rank) for rank in result.ranks]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
