"""Where the records of torchrunx agents and workers go, in the launcher's log server.

- Console (stderr): rank 0's records from INFO up, live; other ranks' from WARNING up, prefixed with
  ``[rank N]``, so a failing rank's traceback shows where the user looks. The agents' records (torch
  elastic's view of the same failures, exit-time noise) go to the agent's file only.
- Files: one per rank and agent under the torchrunx log dir (torchrunx's own file handlers).
- Failure file: ``rank<TAB>kind<TAB>summary`` of each failing rank, in arrival order, for the launcher.
- Progress file: ``rank<TAB>stage`` of each rank's heartbeat, for the launcher's hang watchdog.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from torchrunx.utils.log_handling import file_handlers

from mjdist.launch.heartbeat import PROGRESS_ATTRIBUTE

_LOGGER_PREFIX = re.compile(r"^[a-z_]\w*(?:\.\w+)+:")  # "mjdist.rl.progress:", added by torchrunx


def log_handlers(
    hostnames: list[str],
    workers_per_host: list[int],
    log_dir: str | None,
    failure_file: str,
    progress_file: str | None = None,
) -> list[logging.Handler]:
    """Handlers for the log server (called there by torchrunx)."""
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_console_filter)
    console.setFormatter(_RankFormatter())
    handlers: list[logging.Handler] = [console, _AttributeFileHandler(failure_file, "mjdist_failure")]
    if progress_file is not None:
        handlers.append(_AttributeFileHandler(progress_file, PROGRESS_ATTRIBUTE))
    if log_dir is not None:
        handlers += file_handlers(hostnames, workers_per_host, log_dir=Path(log_dir), log_level=logging.INFO)
    return handlers


def _console_filter(record: logging.LogRecord) -> bool:
    local_rank = getattr(record, "local_rank", None)
    if local_rank is None:
        return False
    return record.levelno >= (logging.INFO if local_rank == 0 else logging.WARNING)


class _RankFormatter(logging.Formatter):
    """Message only (torchrunx prefixes it with the logger name, which is dropped), tagged by origin."""

    def format(self, record: logging.LogRecord) -> str:
        message = _LOGGER_PREFIX.sub("", record.getMessage(), count=1)
        local_rank = getattr(record, "local_rank", 0)
        if local_rank == 0:
            return message
        return "\n".join(f"[rank {local_rank}] {line}" for line in message.splitlines())


class _AttributeFileHandler(logging.Handler):
    """Appends, tab-separated, the tuple a worker attached to a record as ``attribute``: the ``mjdist_failure``
    (rank, kind, summary) of a failing worker's last record, or a heartbeat's (rank, stage)."""

    def __init__(self, path: str, attribute: str) -> None:
        super().__init__()
        self.path = path
        self.attribute = attribute

    def emit(self, record: logging.LogRecord) -> None:
        values = getattr(record, self.attribute, None)
        if values:
            with open(self.path, "a") as file:
                file.write("\t".join(map(str, values)) + "\n")
