"""The launcher's log server, decoding log records as data: a replacement for torchrunx's receiver.

torchrunx streams every agent's and worker's log records to a TCP server in the launcher, framed as
``logging.handlers.SocketHandler`` sends them: a 4-byte big-endian length, then a pickle of the record's
``__dict__`` (plain values only: ``makePickle`` formats the message and drops ``args`` and ``exc_info``).
torchrunx 0.4's ``_LogRecordSocketReceiver`` decodes that with ``pickle.loads``, which runs whatever code a
pickle names, for anyone who can connect. :class:`PlainDataLogReceiver` decodes the same frames with an
unpickler that builds only dicts, lists, tuples, strings, numbers, booleans and None; anything else is dropped
and counted, with one warning per connection naming the peer, and the job goes on.

torchrunx offers no seam for its receiver (a ``handler_factory`` only chooses the handlers), so
:func:`plain_data_log_server` swaps the class in ``torchrunx.utils.log_streaming`` while a launch starts its log
server (a forked process that keeps the swap). ``TORCHRUNX_CHECKED`` names the torchrunx code this was checked
against; tests/test_log_receiver.py fails when an upgrade changes it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import version
from logging import Handler
from socketserver import StreamRequestHandler, ThreadingTCPServer

from torchrunx.utils import log_streaming

log = logging.getLogger(__name__)

PLAIN_TYPES = (dict, list, tuple, str, int, float, bool, type(None))
"""What a decoded log record may hold (a SocketHandler's pickle of ``record.__dict__`` holds nothing else)."""
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A longer frame is no log record: the connection is closed (its framing cannot be trusted any more). A
record's values may not add up to more characters either."""
MAX_RECORD_ITEMS = 100_000
"""The most values (containers, strings, numbers) a record may hold, counting each reference."""
WATCH_POLL_S = 0.25
"""How often the log server's watch looks whether the launch has ended."""
ENDED_GRACE_S = 5.0
"""A log server that ends this long before its launch did not end with it: it is reported."""
TORCHRUNX_CHECKED = "0.4.0"
"""The torchrunx release whose log server this module was checked against: ``start_logging_server`` builds
``_LogRecordSocketReceiver(host=..., port=..., handlers=...)`` from the module's globals."""


class NotPlainData(ValueError):
    """A log record frame that does not decode to a dict of plain data."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds containers, strings and numbers only: every global (class, function) is refused."""

    def find_class(self, module: str, name: str) -> object:
        raise NotPlainData(f"it names {module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise NotPlainData("it holds a persistent reference")


def decode_record(frame: bytes) -> dict[str, object]:
    """The record attributes in one frame's pickle; NotPlainData unless it is a dict of plain data with string
    keys that shadow no LogRecord method, and without ``exc_info`` (SocketHandler sends the formatted text)."""
    try:
        attributes = _PlainDataUnpickler(io.BytesIO(frame)).load()
    except NotPlainData:
        raise
    except Exception as error:  # a truncated or garbled pickle raises almost anything
        raise NotPlainData(f"it is no pickle ({type(error).__name__})") from error
    if type(attributes) is not dict:
        raise NotPlainData(f"it is a {type(attributes).__name__}, not a dict")
    _check_plain(attributes)
    if attributes.get("exc_info") is not None:  # formatters would read it as a traceback
        raise NotPlainData("it carries exc_info, which a SocketHandler never sends")
    for key in attributes:
        if type(key) is not str or callable(getattr(logging.LogRecord, key, None)):
            raise NotPlainData(f"it sets the attribute {key!r}")
    return attributes


def _check_plain(value: object) -> None:
    """Raise NotPlainData if anything reachable from ``value`` is not plain data, or if it expands (counting every
    reference, as formatting it would) past MAX_RECORD_ITEMS items or MAX_RECORD_BYTES characters: a small pickle
    of shared references or of a cycle stands for a huge or endless text."""
    items, characters = 0, 0
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) not in PLAIN_TYPES:
            raise NotPlainData(f"it holds a {type(item).__name__}")
        items += 1
        if isinstance(item, str):
            characters += len(item)
        if items > MAX_RECORD_ITEMS or characters > MAX_RECORD_BYTES:
            raise NotPlainData("it expands past the size of a log record (shared references or a cycle)")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def as_torchrunx_record(attributes: dict[str, object]) -> logging.LogRecord:
    """The record as torchrunx's receiver hands it to the handlers: the logger's name moved into the message,
    named ``torchrunx.<hostname>[.<local rank>]`` (its file handlers select records by that name)."""
    record = logging.makeLogRecord(attributes)
    if record.name != "root":
        record.msg = f"{record.name}:{record.msg}"
    record.name = f"torchrunx.{getattr(record, 'hostname', '?')}"
    local_rank = getattr(record, "local_rank", None)
    if local_rank is not None:
        record.name += f".{local_rank}"
    return record


class PlainDataLogReceiver(ThreadingTCPServer):
    """torchrunx's log server, constructed as torchrunx constructs its own (``host``, ``port``, ``handlers``),
    decoding records with :func:`decode_record`. Each connection has its own thread, so a peer that connects and
    sends nothing holds only that thread.

    In the log server process that torchrunx forks, a server that cannot listen says so in one line and ends that
    process (SystemExit); one that listens writes its pid to ``started_fd`` (set by :func:`plain_data_log_server`),
    whose reader then sees the end of the pipe when this process ends."""

    daemon_threads = True
    started_fd: int | None = None
    """The write end of :func:`plain_data_log_server`'s pipe while a launch starts; None otherwise."""

    def __init__(self, host: str, port: int, handlers: list[Handler]) -> None:
        self.handlers = handlers
        self.dropped = 0
        self._count_lock = threading.Lock()
        try:
            super().__init__((host, port), _RecordStreamHandler)
        except OSError as error:
            if self.started_fd is None:
                raise
            log.error(
                "The launcher's log server cannot listen on %s:%d (%s): no rank output will reach this console, and "
                "no per-rank log files will be written", host, port, error,
            )  # fmt: skip
            raise SystemExit(1) from None
        if self.started_fd is not None:
            os.write(self.started_fd, f"{os.getpid()}\n".encode())

    def count_drop(self) -> int:
        with self._count_lock:
            self.dropped += 1
            return self.dropped


class _RecordStreamHandler(StreamRequestHandler):
    server: PlainDataLogReceiver

    def handle(self) -> None:
        host, port = self.client_address[:2]
        peer = f"{host}:{port}"
        warned = False
        for frame in _frames(self.connection, peer):
            try:
                record = as_torchrunx_record(decode_record(frame))
                for handler in self.server.handlers:
                    handler.handle(record)
            except Exception as error:  # NotPlainData, or plain data that a handler's filter cannot read
                total = self.server.count_drop()
                if not warned:
                    log.warning(
                        "Dropped a log record from %s: %s (log records must be plain data; %d dropped so far)",
                        peer,
                        error,
                        total,
                    )
                    warned = True


def _frames(connection: socket.socket, peer: str) -> Iterator[bytes]:
    """The length-prefixed frames a peer sends, until it closes the connection or announces an oversized one."""
    while True:
        header = _receive(connection, 4)
        if header is None:
            return
        (length,) = struct.unpack(">L", header)
        if length > MAX_RECORD_BYTES:
            log.warning("Closed the log connection from %s: it announced a %d-byte record", peer, length)
            return
        frame = _receive(connection, length)
        if frame is None:
            return
        yield frame


def _receive(connection: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None if the peer closes (or resets) the connection first."""
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = connection.recv(min(size - len(chunks), 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


@contextlib.contextmanager
def plain_data_log_server(log_dir: str | None = None) -> Iterator[Callable[[], None]]:
    """While open, torchrunx's launcher starts :class:`PlainDataLogReceiver` as its log server, and a log server
    that ends while the launch goes on is reported in one line naming ``log_dir``, where the per-rank files are
    (None: there are none). Yields the call that says the launch is over (torchrunx then ends its log server);
    leaving the block says it too.

    Raises RuntimeError, before anything starts, if torchrunx's log server no longer builds its receiver from the
    name this replaces (the swap would then silently leave the unpickling receiver in place).
    """
    if "_LogRecordSocketReceiver" not in log_streaming.start_logging_server.__code__.co_names:
        raise RuntimeError(
            f"torchrunx {version('torchrunx')} changed its log server; mjdist's safe log receiver was checked "
            f"against torchrunx {TORCHRUNX_CHECKED} only"
        )
    checked = log_streaming._LogRecordSocketReceiver
    watch = _ServerWatch(log_dir)
    log_streaming._LogRecordSocketReceiver = PlainDataLogReceiver  # type: ignore[misc]
    PlainDataLogReceiver.started_fd = watch.write_fd
    try:
        with watch:
            yield watch.launch_ended.set
    finally:
        PlainDataLogReceiver.started_fd = None
        log_streaming._LogRecordSocketReceiver = checked  # type: ignore[misc]


class _ServerWatch:
    """A pipe whose write end the log server process holds once it listens (it writes its pid), and a thread that
    reads the other end: the end of the pipe is the end of that process. torchrunx ends its log server itself once
    the launch is over, so only an end that the launch outlives by ENDED_GRACE_S is reported."""

    def __init__(self, log_dir: str | None) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.files_note = f"the per-rank log files are in {log_dir}" if log_dir else "there are no per-rank log files"
        self.launch_ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="log-server-watch", daemon=True)
        self._close_lock = threading.Lock()
        self._write_open = True

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self.launch_ended.set()
        self._close_write_end()
        self._thread.join(WATCH_POLL_S * 4)
        if not self._thread.is_alive():
            os.close(self.read_fd)

    def _close_write_end(self) -> None:
        with self._close_lock:
            if self._write_open:
                os.close(self.write_fd)
                self._write_open = False

    def _watch(self) -> None:
        pid = b""
        while not self.launch_ended.is_set():
            if not select.select([self.read_fd], [], [], WATCH_POLL_S)[0]:
                continue
            data = os.read(self.read_fd, 64)
            if data:
                pid += data
                self._close_write_end()  # from now on only the log server holds it
                continue
            if pid and not self.launch_ended.wait(ENDED_GRACE_S):
                log.warning(
                    "The launcher's log server (pid %s) ended while the ranks run: their output no longer reaches "
                    "this console or the per-rank log files; %s",
                    pid.decode().strip(), self.files_note,
                )  # fmt: skip
            return
