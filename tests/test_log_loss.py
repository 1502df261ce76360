"""A launch never loses its ranks' output silently: a log server that cannot listen or ends mid-launch, per-rank
files that cannot be made or written, and a console that can no longer be written are each said in one line that
names where the output still goes."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import socket
import time
from pathlib import Path

import pytest
from torchrunx.utils import log_streaming
from torchrunx.utils.log_streaming import LoggingServerArgs, WorkerLogRecord

from mjdist.launch import log_receiver
from mjdist.launch.log_receiver import PlainDataLogReceiver, plain_data_log_server
from mjdist.launch.log_routing import log_handlers


def _torchrunx_log_server() -> multiprocessing.Process:
    """torchrunx's log server process, started as its launcher starts it (forked, through start_logging_server)."""
    args = LoggingServerArgs(handler_factory=list, logging_hostname="127.0.0.1", logging_port=0)
    server = multiprocessing.get_context("fork").Process(
        target=log_streaming.start_logging_server, args=(args.serialize(), multiprocessing.Event()), daemon=True
    )
    server.start()
    return server


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.fixture
def quick_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_receiver, "ENDED_GRACE_S", 0.5)


def test_a_log_server_that_dies_mid_launch_is_said_in_one_line_naming_the_files(
    caplog: pytest.LogCaptureFixture, quick_grace: None
) -> None:
    with plain_data_log_server("/runs/x/torchrunx"):
        server = _torchrunx_log_server()
        time.sleep(0.3)  # it listens
        server.kill()
        deadline = time.monotonic() + 10
        while not _warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
    (line,) = _warnings(caplog)
    assert line == (
        f"The launcher's log server (pid {server.pid}) ended while the ranks run: their output no longer reaches "
        "this console or the per-rank log files; the per-rank log files are in /runs/x/torchrunx"
    )


def test_a_log_server_ended_with_its_launch_is_not_reported(
    caplog: pytest.LogCaptureFixture, quick_grace: None
) -> None:
    with plain_data_log_server(None) as launch_over:
        server = _torchrunx_log_server()
        time.sleep(0.3)
        server.kill()  # as torchrunx ends it, right before its launch returns
        launch_over()
        time.sleep(0.8)  # past the grace, with the launcher's clean-up still under way
    assert _warnings(caplog) == []


def test_a_log_server_that_cannot_listen_says_so_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with plain_data_log_server(None), pytest.raises(SystemExit):
            PlainDataLogReceiver("127.0.0.1", port, [])
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.startswith(f"The launcher's log server cannot listen on 127.0.0.1:{port} (")
    assert line.endswith("): no rank output will reach this console, and no per-rank log files will be written")


def _record(local_rank: int, message: str = "iter 1/5") -> logging.LogRecord:
    record = logging.LogRecord("torchrunx.h", logging.WARNING, __file__, 1, message, None, None)
    return WorkerLogRecord.from_record(record, "h", local_rank)


def test_log_files_that_cannot_be_made_leave_the_console_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("")
    handlers = log_handlers(["h"], [2], str(tmp_path / "a-file"), str(tmp_path / "failures"))
    assert len(handlers) == 2  # the console and the failure file
    (line,) = _warnings(caplog)
    assert line.startswith(f"Cannot write the per-rank log files in {tmp_path / 'a-file'} (")
    assert line.endswith("rank output reaches this console only (rank 0's records, and the other ranks' warnings "
                         "and errors), and there are no per-rank log files")  # fmt: skip


class _Broken:
    """A stream whose writes fail as a closed pipe's or a full disk's do."""

    def __init__(self, code: int) -> None:
        self.code = code

    def write(self, text: str) -> int:
        raise OSError(self.code, "broken")

    def flush(self) -> None:
        raise OSError(self.code, "broken")


def test_a_console_or_files_that_fail_are_said_once_naming_where_output_still_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr", _Broken(errno.EPIPE))
    console, _, *files = log_handlers(["h"], [2], str(tmp_path / "logs"), str(tmp_path / "failures"))
    assert len(files) == 3  # the agent's and each rank's
    for handler in files:
        handler.inner.stream = _Broken(errno.ENOSPC)  # type: ignore[attr-defined]
    for _ in range(3):
        for local_rank in (0, 1):
            for handler in (console, *files):
                handler.handle(_record(local_rank))
    assert _warnings(caplog) == [
        f"Rank output no longer reaches this console (BrokenPipeError: [Errno {errno.EPIPE}] broken); every rank's "
        f"output still goes to the files in {tmp_path / 'logs'}",
        f"Writing the per-rank log files in {tmp_path / 'logs'} failed (OSError: [Errno {errno.ENOSPC}] broken); "
        "rank output still reaches this console (rank 0's records, and the other ranks' warnings and errors)",
    ]
