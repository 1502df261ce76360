"""Launch the (optionally faulty) cart-pole through mjdist's real launcher and print the ranks' results.

``launch_task.py LOG_ROOT WORKERS ITERATIONS`` prints one JSON list of RankResult dicts on stdout and exits like
``train``: 0 on success, 1 when a rank failed, 130 when interrupted; like ``train``, it writes the run's
summary.json. Faults: see faulty_task.py.
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
from mjdist.launch.devices import resolve_devices
from mjdist.launch.plan import make_plan
from mjdist.run_summary import summary_on_exit
from mjdist.training import train_on_ranks


def main() -> int:
    log_root, workers, iterations = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = TrainConfig(
        env=dataclasses.replace(FAULTY.env, num_envs=64),
        agent=dataclasses.replace(FAULTY.agent, max_iterations=iterations, save_interval=5),
        log_root=log_root,
    )
    selection = resolve_devices(["None"], workers, None, 0, os.cpu_count() or 1)
    plan = make_plan(FAULTY.name, cfg, selection, os.environ, datetime.datetime.now())
    try:
        with summary_on_exit(plan) as run_end:  # as the train command does
            results = train_on_ranks(plan, cfg, FAULTY)
            run_end.finished(results[0].parameter_digest)
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
