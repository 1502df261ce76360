"""``play <task> [flags]``: the flags become a PlayConfig, :mod:`mjdist.play.run` plays it, and the summary is
printed; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import logging
import sys

from mjdist.cli.usage import fail_usage, parse_task_command
from mjdist.errors import UsageError
from mjdist.launch.devices import DeviceRequest
from mjdist.play.config import PlayConfig
from mjdist.play.run import plan_json, plan_play, run_play

log = logging.getLogger("mjdist.play")

PROG = "play"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Console entry point of ``play`` (``prog``: the command's name in messages, ``mjdist play`` there)."""
    try:
        spec, cfg = parse_task_command(prog, argv, PlayConfig, lambda spec: PlayConfig(env=spec.play_env or spec.env))
        request = DeviceRequest.from_flags(cfg.gpu_ids, None)
        if cfg.dry_run:
            print(json.dumps(plan_json(spec, cfg, plan_play(spec, cfg, request))))
            return 0
        summary = run_play(spec, cfg, request)
    except UsageError as error:
        return fail_usage(prog, str(error))
    except KeyboardInterrupt:
        log.error("Interrupted.")
        return 130
    print(json.dumps(summary.to_json()) if cfg.json else summary.to_text())
    return 0


def run() -> None:
    """``play`` console script."""
    sys.exit(main())
