"""Launch the faulty cart-pole through mjdist's real launcher: ``launch_faulty.py RUN_DIR WORKERS ITERATIONS``.

Exits like ``train`` does: 0 on success, 1 when a rank failed, 130 when interrupted.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import sys
from pathlib import Path

from faulty_task import FAULTY

from mjdist.config import TrainConfig
from mjdist.launch.devices import resolve_devices
from mjdist.launch.launcher import RankFailedError, launch
from mjdist.launch.plan import make_plan


def main() -> int:
    run_root, workers, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = TrainConfig(
        env=dataclasses.replace(FAULTY.env, num_envs=64),
        agent=dataclasses.replace(FAULTY.agent, max_iterations=iterations),
        log_root=Path(run_root),
    )
    selection = resolve_devices(["None"], workers, None, 0, os.cpu_count() or 1)
    plan = make_plan(FAULTY.name, cfg, selection, os.environ, datetime.datetime.now())
    try:
        results = launch(plan, cfg, FAULTY)
    except RankFailedError as failure:
        logging.error("Training failed: %s", failure)
        return 130 if failure.interrupted else 1
    logging.info("ok %s", [result.parameter_digest[:12] for result in results])
    return 0


if __name__ == "__main__":
    sys.exit(main())
