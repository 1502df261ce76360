"""Where the records of torchrunx agents and workers go, in the launcher's log server.

- Console (stderr): global rank 0's records from INFO up, live; other ranks' from WARNING up, prefixed with
  ``[rank N]`` (N global: host index x ranks per host + local rank), so a failing rank's traceback shows
  where the user looks. The agents' records (torch elastic's view of the same failures, exit-time noise) go
  to the agent's file only.
- Files: one per rank and agent under the torchrunx log dir (torchrunx's own file handlers).
- Failure file: ``rank<TAB>kind<TAB>summary`` of each failing rank, in arrival order, for the launcher.
- Progress file: ``rank<TAB>stage`` of each rank's heartbeat, for the launcher's hang watchdog.

Neither the console nor the files stop silently: per-rank files that cannot be made, a console that can no longer
be written (a closed pipe, a lost terminal) and files that can no longer be written (a full disk) are each said
once, in one line, naming where the ranks' output still goes (the files' directory, or that there are none).
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import threading
from functools import partial
from pathlib import Path

from torchrunx.utils.log_handling import file_handlers

from mjdist.launch.heartbeat import PROGRESS_ATTRIBUTE

log = logging.getLogger(__name__)

_LOGGER_PREFIX = re.compile(r"^[a-z_]\w*(?:\.\w+)+:")  # "mjdist.rl.progress:", added by torchrunx


def log_handlers(
    hostnames: list[str],
    workers_per_host: list[int],
    log_dir: str | None,
    failure_file: str,
    progress_file: str | None = None,
) -> list[logging.Handler]:
    """Handlers for the log server (called there by torchrunx)."""
    starts = itertools.accumulate(workers_per_host, initial=0)
    first_rank = dict(zip(hostnames, starts, strict=False))
    files = _rank_files(hostnames, workers_per_host, log_dir)
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(partial(_console_filter, first_rank))
    console.setFormatter(_RankFormatter(first_rank))
    still = f"every rank's output still goes to the files in {log_dir}" if files else "there are no per-rank log files"
    handlers: list[logging.Handler] = [
        _UntilFailure(console, _OneReport(f"Rank output no longer reaches this console (%s); {still}")),
        _AttributeFileHandler(failure_file, "mjdist_failure"),
    ]
    if progress_file is not None:
        handlers.append(_AttributeFileHandler(progress_file, PROGRESS_ATTRIBUTE))
    files_failed = _OneReport(
        f"Writing the per-rank log files in {log_dir} failed (%s); rank output still reaches this console (rank 0's "
        "records, and the other ranks' warnings and errors)"
    )
    return handlers + [_UntilFailure(file, files_failed) for file in files]


def _rank_files(hostnames: list[str], workers_per_host: list[int], log_dir: str | None) -> list[logging.Handler]:
    """torchrunx's file handlers, one per rank and agent; none (said in one line) if they cannot be made."""
    if log_dir is None:
        return []
    try:
        return file_handlers(hostnames, workers_per_host, log_dir=Path(log_dir), log_level=logging.INFO)
    except OSError as error:
        log.warning(
            "Cannot write the per-rank log files in %s (%s); rank output reaches this console only (rank 0's records, "
            "and the other ranks' warnings and errors), and there are no per-rank log files", log_dir, error,
        )  # fmt: skip
        return []


class _OneReport:
    """A message (with ``%s`` for the error) said once, however many handlers fail."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._said = threading.Event()

    def say(self, error: BaseException) -> None:
        if not self._said.is_set():
            self._said.set()
            log.warning(self.message, f"{type(error).__name__}: {error}")


class _UntilFailure(logging.Handler):
    """Passes records to ``inner`` until writing one fails with an OSError; then says so (``report``) and drops the
    rest, instead of a traceback for every record. Other errors (a record that cannot be formatted) are handled as
    ``inner`` handles them."""

    def __init__(self, inner: logging.Handler, report: _OneReport) -> None:
        super().__init__()
        self.inner = inner
        self.report = report
        self.failed = False
        self._handle_other_error = inner.handleError
        inner.handleError = self._inner_failed  # type: ignore[method-assign]

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.inner.handle(record)

    def _inner_failed(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self._handle_other_error(record)
            return
        self.failed = True
        self.report.say(error)


def _global_rank(first_rank: dict[str, int], record: logging.LogRecord) -> int | None:
    """The global rank a worker's record comes from (None for an agent's record)."""
    local_rank = getattr(record, "local_rank", None)
    if local_rank is None:
        return None
    return first_rank.get(getattr(record, "hostname", ""), 0) + local_rank


def _console_filter(first_rank: dict[str, int], record: logging.LogRecord) -> bool:
    rank = _global_rank(first_rank, record)
    if rank is None:
        return False
    return record.levelno >= (logging.INFO if rank == 0 else logging.WARNING)


class _RankFormatter(logging.Formatter):
    """Message only (torchrunx prefixes it with the logger name, which is dropped), tagged by global rank."""

    def __init__(self, first_rank: dict[str, int]) -> None:
        super().__init__()
        self.first_rank = first_rank

    def format(self, record: logging.LogRecord) -> str:
        message = _LOGGER_PREFIX.sub("", record.getMessage(), count=1)
        rank = _global_rank(self.first_rank, record) or 0
        if rank == 0:
            return message
        return "\n".join(f"[rank {rank}] {line}" for line in message.splitlines())


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
