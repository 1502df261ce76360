"""Benchmark records: one JSON object per measured configuration, appended as a line to a results file.

A record::

    {"schema": 1, "benchmark": "physics", "task": "cartpole-balance", "timestamp": "2026-11-20T10:00:00Z",
     "machine": {...}, "versions": {...}, "git_commit": "..." | null, "git_dirty": true | false | null,
     "config": {...what was measured...},
     "metrics": {"<name>": {"median": m, "min": a, "max": b, "values": [one per repetition]}, ...}}

The first metric of a record is its headline (the number its summary line leads with).
"""

from __future__ import annotations

import datetime
import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORD_KEYS = ("schema", "benchmark", "task", "timestamp", "machine", "versions", "git_commit", "config", "metrics")
STAT_KEYS = ("median", "min", "max", "values")


class RecordsError(ValueError):
    """A results file that cannot be read as records; the message is one line."""


def metric(values: Sequence[float]) -> dict[str, Any]:
    """``{median, min, max, values}`` of one metric's values over the repetitions."""
    if not values:
        raise ValueError("a metric needs at least one value")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


@dataclass(frozen=True)
class Provenance:
    """Where and with what a set of records was measured; gathered once per ``bench`` invocation."""

    machine: dict[str, Any]
    versions: dict[str, str | None]
    git_commit: str | None
    git_dirty: bool | None


def make_record(
    benchmark: str,
    task: str,
    provenance: Provenance,
    config: Mapping[str, Any],
    metrics: Mapping[str, Sequence[float]],
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A record of one measured configuration; ``metrics`` maps each metric to its per-repetition values."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": benchmark,
        "task": task,
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": provenance.machine,
        "versions": provenance.versions,
        "git_commit": provenance.git_commit,
        "git_dirty": provenance.git_dirty,
        "config": dict(config),
        "metrics": {name: metric(values) for name, values in metrics.items()},
    }


@dataclass
class Recorder:
    """Turns measurements of one task into records: appends each to the results file and logs its summary."""

    path: Path
    task: str
    provenance: Provenance
    written: int = 0
    """Records appended so far."""

    def __call__(self, benchmark: str, config: Mapping[str, Any], metrics: Mapping[str, Sequence[float]]) -> None:
        record = make_record(benchmark, self.task, self.provenance, config, metrics)
        append_record(self.path, record)
        self.written += 1
        log.info("%s", summary_line(record))


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line (JSON Lines), creating the file and its directory if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as results:
        results.write(json.dumps(record, sort_keys=False) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a results file, in file order; RecordsError names the first problem."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise RecordsError(f"cannot read results file {path}: {error.strerror or error}") from error
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            records.append(_parse(line, f"{path}:{number}"))
    if not records:
        raise RecordsError(f"results file {path} holds no records; run `bench` first")
    return records


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise RecordsError(f"{where} is not JSON: {error.msg}") from error
    if not isinstance(record, dict):
        raise RecordsError(f"{where} is not a JSON object")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise RecordsError(f"{where} is not a bench record: it lacks {', '.join(missing)}")
    if record["schema"] != SCHEMA_VERSION:
        raise RecordsError(f"{where} has schema {record['schema']!r}; this bench reads schema {SCHEMA_VERSION}")
    for name, stats in record["metrics"].items():
        if not isinstance(stats, dict) or any(key not in stats for key in STAT_KEYS):
            raise RecordsError(f"{where}: metric {name!r} lacks one of {', '.join(STAT_KEYS)}")
    return record


def summary_line(record: Mapping[str, Any]) -> str:
    """One line for the console: benchmark, task, the configuration, then each metric's median [min..max]."""
    config = " ".join(f"{key}={_short(value)}" for key, value in record["config"].items())
    metrics = "; ".join(
        f"{name} {format_value(stats['median'])} [{format_value(stats['min'])}..{format_value(stats['max'])}]"
        for name, stats in record["metrics"].items()
    )
    repetitions = len(next(iter(record["metrics"].values()))["values"]) if record["metrics"] else 0
    return f"{record['benchmark']} | {record['task']} | {config} | {metrics} (n={repetitions})"


def format_value(value: float) -> str:
    """Large numbers with thousands separators, small ones with three significant digits."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
