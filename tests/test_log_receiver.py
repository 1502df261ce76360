"""The launcher's log server decodes records as plain data: a SocketHandler's records arrive, code does not run."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from logging.handlers import SocketHandler
from pathlib import Path

import pytest
from conftest import touch_pickle
from torchrunx.utils import log_streaming
from torchrunx.utils.log_streaming import WorkerLogRecord

from mjdist.launch import log_receiver
from mjdist.launch.log_receiver import NotPlainData, PlainDataLogReceiver, decode_record, plain_data_log_server

CHECKED_SOURCE_SHA256 = "d218ad7e6938adaa7683507c6b9cc88efcf257e3a8c8397f01fc6e939fd6ab53"
"""torchrunx 0.4.0's ``_LogRecordSocketReceiver`` and ``start_logging_server``, as mjdist.launch.log_receiver replaces
the one inside the other."""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@pytest.fixture
def receiver() -> Iterator[tuple[PlainDataLogReceiver, _Capture]]:
    capture = _Capture()
    server = PlainDataLogReceiver("127.0.0.1", 0, [capture])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, capture
    server.shutdown()
    server.server_close()


def _worker_record(message: str, **extra: object) -> logging.LogRecord:
    """A record as a torchrunx worker's SocketHandler sees it (hostname and local rank added)."""
    record = logging.LogRecord("mjdist.rl.progress", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return WorkerLogRecord.from_record(record, "localhost", 1)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">L", len(payload)) + payload


def _connect(server: PlainDataLogReceiver) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=5)


def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_torchrunx_log_server_is_the_one_checked() -> None:
    """The swap in plain_data_log_server relies on torchrunx's log server code as checked; an upgrade that changes
    it must be checked again (and TORCHRUNX_CHECKED and the pin in pyproject.toml moved)."""
    assert version("torchrunx") == log_receiver.TORCHRUNX_CHECKED
    source = inspect.getsource(log_streaming._LogRecordSocketReceiver) + inspect.getsource(
        log_streaming.start_logging_server
    )
    assert hashlib.sha256(source.encode()).hexdigest() == CHECKED_SOURCE_SHA256
    assert "log_receiver = _LogRecordSocketReceiver(" in inspect.getsource(log_streaming.start_logging_server)


def test_a_socket_handlers_records_arrive_with_their_attributes(
    receiver: tuple[PlainDataLogReceiver, _Capture],
) -> None:
    server, capture = receiver
    handler = SocketHandler(*server.server_address[:2])
    handler.handle(_worker_record("iter 3/5", mjdist_failure=(1, "error", "boom"), mjdist_progress=(1, "iteration")))
    handler.close()
    assert capture.arrived.wait(5)
    (record,) = capture.records
    assert record.getMessage() == "mjdist.rl.progress:iter 3/5"
    assert record.name == "torchrunx.localhost.1"
    assert record.mjdist_failure == (1, "error", "boom")  # type: ignore[attr-defined]
    assert record.mjdist_progress == (1, "iteration")  # type: ignore[attr-defined]
    assert server.dropped == 0


def test_a_pickled_object_is_dropped_with_a_warning_and_the_connection_goes_on(
    receiver: tuple[PlainDataLogReceiver, _Capture], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, capture = receiver
    marker = tmp_path / "ran"
    record = _worker_record("fine")
    with _connect(server) as connection:
        for payload in (touch_pickle(marker), pickle.dumps({"msg": "x", "args": {1, 2}})):
            connection.sendall(_frame(payload))
        connection.sendall(SocketHandler("", 0).makePickle(record))
        assert capture.arrived.wait(5)
        host, port = connection.getsockname()[:2]
        peer = f"{host}:{port}"
    assert not marker.exists()
    assert server.dropped == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == log_receiver.__name__]
    assert len(warnings) == 1  # one per connection
    assert peer in warnings[0]
    assert "posix.system" in warnings[0]
    assert [r.getMessage() for r in capture.records] == ["mjdist.rl.progress:fine"]


def test_random_bytes_and_oversized_frames_close_only_their_connection(
    receiver: tuple[PlainDataLogReceiver, _Capture],
) -> None:
    server, capture = receiver
    with _connect(server) as garbage, _connect(server) as oversized, _connect(server) as silent:
        garbage.sendall(_frame(os.urandom(64)))
        oversized.sendall(struct.pack(">L", log_receiver.MAX_RECORD_BYTES + 1))
        assert oversized.recv(1) == b""  # closed by the server
        _wait_for(lambda: server.dropped == 1)
        # a real client still gets through while a silent one holds its connection open
        handler = SocketHandler(*server.server_address[:2])
        handler.handle(_worker_record("still here"))
        handler.close()
        assert capture.arrived.wait(5)
        assert silent.fileno() >= 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "a list, not a dict"),
        ({"msg": b"bytes"}, "holds a bytes"),
        ({"msg": frozenset()}, "holds a frozenset"),
        ({1: "x"}, "sets the attribute 1"),
        ({"getMessage": "x"}, "sets the attribute 'getMessage'"),
        ({"msg": "x", "exc_info": ("ValueError", "boom", None)}, "carries exc_info"),
        ({"msg": WorkerLogRecord}, "names torchrunx.utils.log_streaming.WorkerLogRecord"),
    ],
)
def test_only_a_dict_of_plain_data_decodes(payload: object, reason: str) -> None:
    with pytest.raises(NotPlainData, match=reason):
        decode_record(pickle.dumps(payload))


def test_shared_references_and_cycles_that_expand_past_a_record_are_refused() -> None:
    nested: list[object] = ["leaf"]
    for _ in range(200):  # 2**200 paths through 200 lists: formatting it would never end
        nested = [nested, nested]
    cycle: list[object] = []
    cycle.append(cycle)
    long_line = "x" * 1024
    for attribute in (nested, cycle, [long_line] * 20_000):  # the last: 20 MiB of text from a 1 KiB string
        with pytest.raises(NotPlainData, match="expands past the size of a log record"):
            decode_record(pickle.dumps({"msg": "x", "extra": attribute}))
    assert decode_record(pickle.dumps({"msg": "x", "extra": [long_line] * 1_000}))["msg"] == "x"


def test_the_swap_lasts_only_while_open_and_refuses_an_unknown_torchrunx(monkeypatch: pytest.MonkeyPatch) -> None:
    original = log_streaming._LogRecordSocketReceiver
    with plain_data_log_server():
        assert log_streaming._LogRecordSocketReceiver is PlainDataLogReceiver
    assert log_streaming._LogRecordSocketReceiver is original

    def start_logging_server(serialized_args: bytes, stop_event: object) -> None:
        """A torchrunx whose log server builds its receiver some other way."""

    monkeypatch.setattr(log_streaming, "start_logging_server", start_logging_server)
    with pytest.raises(RuntimeError, match="changed its log server"), plain_data_log_server():
        pass
    assert log_streaming._LogRecordSocketReceiver is original
