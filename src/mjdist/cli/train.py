"""``train <task> [overrides]``: the flags become a TrainConfig, :mod:`mjdist.train.run` runs it, and its
exceptions become exit codes (2: bad input, 1: training failed, 130: interrupted)."""

from __future__ import annotations

import json
import logging
import sys

from mjdist.cli.usage import fail_usage, parse_task_command
from mjdist.errors import RankFailedError, UsageError
from mjdist.launch.devices import DeviceRequest
from mjdist.train.config import TrainConfig
from mjdist.train.run import plan_run, run_training

log = logging.getLogger("mjdist.train")

PROG = "train"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Console entry point of ``train`` (``prog``: the command's name in messages, ``mjdist train`` there)."""
    try:
        spec, cfg = parse_task_command(
            prog, argv, TrainConfig, lambda spec: TrainConfig(env=spec.env, agent=spec.agent)
        )
        request = DeviceRequest.from_flags(cfg.gpu_ids, cfg.cpu_workers)
        if cfg.dry_run:
            print(json.dumps(plan_run(spec, cfg, request).to_json()))
            return 0
        run_training(spec, cfg, request)
    except UsageError as error:
        return fail_usage(prog, str(error))
    except KeyboardInterrupt as interrupt:
        log.error("Interrupted%s", f": {interrupt}" if str(interrupt) else ".")
        return 130
    except RankFailedError as failure:
        log.error("Training failed: %s", failure)
        return 1
    return 0


def run() -> None:
    """``train`` console script."""
    sys.exit(main())
