"""``bench [BENCHMARK ...] [flags]``: measure mjdist on this machine into JSON Lines records; ``bench --report``
turns them into docs/performance.md and its plots."""

from __future__ import annotations

import logging
import sys

import tyro

from mjdist.bench.config import BenchConfig
from mjdist.bench.devices import BenchDevices, bench_devices
from mjdist.bench.records import Recorder, read_records
from mjdist.cli.usage import fail_usage
from mjdist.errors import RankFailedError
from mjdist.launch.devices import DeviceSelectionError
from mjdist.tasks import registered_tasks

log = logging.getLogger("mjdist.bench")

PROG = "bench"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Console entry point of ``bench`` (``prog``: the command's name in messages, ``mjdist bench`` there)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = tyro.cli(BenchConfig, args=sys.argv[1:] if argv is None else argv, prog=prog)
    try:
        cfg.validate(tuple(registered_tasks()))
        if cfg.report:
            records = read_records(cfg.results)
        else:
            devices = bench_devices(cfg.device, cfg.ranks_needed())
    except (ValueError, DeviceSelectionError) as error:
        return fail_usage(prog, str(error))
    if cfg.report:
        return _report(records, cfg)
    from mjdist.launch.bootstrap import enter_device
    from mjdist.launch.identity import RankIdentity

    # set up as a rank of its own before any benchmark imports mujoco (triton first, the device)
    with enter_device(devices.simulation_rank(), RankIdentity()):
        return _measure(cfg, devices)


def _report(records: list[dict], cfg: BenchConfig) -> int:
    from mjdist.bench.report import write_report  # matplotlib: only for the report

    for path in write_report(records, cfg.results, cfg.docs):
        log.info("Wrote %s", path)
    return 0


def _measure(cfg: BenchConfig, devices: BenchDevices) -> int:
    from mjdist.bench.launch_time import LaunchFailedError
    from mjdist.bench.machine import provenance
    from mjdist.bench.suite import run_benchmarks

    recorder = Recorder(cfg.results, cfg.task, provenance())
    try:
        run_benchmarks(registered_tasks()[cfg.task], cfg, devices, recorder)
    except KeyboardInterrupt:
        log.error("Interrupted after %d record(s), which are in %s.", recorder.written, cfg.results)
        return 130
    except (RankFailedError, LaunchFailedError) as failure:
        log.error("bench failed after %d record(s): %s", recorder.written, failure)
        return 1
    log.info("Appended %d record(s) to %s; `uv run bench --report` turns them into docs/performance.md",
             recorder.written, cfg.results)  # fmt: skip
    return 0


def run() -> None:
    """``bench`` console script."""
    sys.exit(main())
