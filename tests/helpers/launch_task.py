"""Launch the (optionally faulty) cart-pole through mjdist's real launcher and print the ranks' results.

``launch_task.py LOG_ROOT WORKERS ITERATIONS [HOST ...]`` prints one JSON list of RankResult dicts on stdout and
exits like ``train``: 0 on success, 1 when a rank failed, 130 when interrupted. Faults: see faulty_task.py.
It plans like ``train`` does: as one rank under torchrun-style variables, else WORKERS CPU workers on each HOST
(this host if none), reached with the SSH config file named by ``MJDIST_TEST_SSH_CONFIG``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import sys
from pathlib import Path

from faulty_task import FAULTY

from mjdist.config import TrainConfig
from mjdist.errors import RankFailedError
from mjdist.launch import launcher
from mjdist.launch.resolve import resolve_plan
from mjdist.training import train_on_ranks

launcher.ENV_VARS_FOR_RANKS = (*launcher.ENV_VARS_FOR_RANKS, "MJDIST_TEST_*")  # the faults reach remote ranks too


def main() -> int:
    log_root, workers, iterations, hosts = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4:])
    ssh_config = os.environ.get("MJDIST_TEST_SSH_CONFIG")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = TrainConfig(
        env=dataclasses.replace(FAULTY.env, num_envs=64),
        agent=dataclasses.replace(FAULTY.agent, max_iterations=iterations, save_interval=5),
        log_root=log_root,
        gpu_ids=("None",),
        cpu_workers=workers,
        hosts=hosts,
        ssh_config=Path(ssh_config) if ssh_config else None,
    )
    plan, _ = resolve_plan(FAULTY.name, cfg, os.environ, 0, datetime.datetime.now(), None)
    try:
        results = train_on_ranks(plan, cfg, FAULTY)
    except KeyboardInterrupt as interrupt:
        logging.error("Interrupted: %s", interrupt)
        return 130
    except RankFailedError as failure:
        logging.error("Training failed: %s", failure)
        return 1
    print(json.dumps([dataclasses.asdict(result) for result in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
