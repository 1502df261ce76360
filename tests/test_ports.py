"""Attack a running 2-rank CPU job on every TCP port its processes listen on, from loopback only.

To each port go a pickle that would create a file (framed as a log record, and bare), random bytes, and two
connections held open for the rest of the job (one silent, one stopped halfway through a frame's length). The job
must run no payload, finish as usual (exit 0, identical parameters on both ranks), keep showing the ranks' log
lines, and end without waiting for the held connections. The ports are also checked against the inventory in
docs/security.md ("Network").
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import REPO, TRAIN, subprocess_env, touch_pickle

from mjdist.launch.loopback import loopback_interface

pytestmark = pytest.mark.slow

WILDCARDS = {"0.0.0.0", "::", ""}
ITERATIONS = 15
JOB_TIMEOUT_S = 300


@dataclass(frozen=True)
class Listener:
    """A TCP port that one of the job's processes listens on."""

    role: str
    """launcher, log server, agent or worker (see docs/security.md)."""
    address: str
    port: int

    @property
    def scope(self) -> str:
        if self.address in WILDCARDS:
            return "all interfaces"
        return "loopback" if ipaddress.ip_address(self.address).is_loopback else self.address

    @property
    def loopback_target(self) -> tuple[str, int]:
        assert self.scope != self.address, f"{self} listens on a network address only; this test stays on loopback"
        return ("127.0.0.1" if self.address in WILDCARDS else self.address), self.port


EXPECTED_CPU_JOB = [
    ("agent", "loopback"),  # gloo: launcher-agent group
    ("launcher", "all interfaces"),  # TCPStore: launcher-agent group
    ("launcher", "loopback"),  # gloo: launcher-agent group
    ("log server", "loopback"),  # torchrunx's log server, mjdist's plain-data receiver
    ("worker", "all interfaces"),  # TCPStore: the ranks' group (rank 0)
    ("worker", "loopback"),  # gloo: the ranks' group (rank 0)
    ("worker", "loopback"),  # gloo: the ranks' group (rank 1)
]
"""What a 2-worker CPU job on one host listens on, by process, as docs/security.md lists it."""


def _role(process: psutil.Process, launcher: psutil.Process) -> str:
    if process.pid == launcher.pid:
        return "launcher"
    command = " ".join(process.cmdline())
    if "spawn_main" in command:
        return "worker"
    if "torchrunx" in command:
        return "agent"
    if process.ppid() == launcher.pid and process.cmdline() == launcher.cmdline():
        return "log server"  # forked by the launcher
    return command


def job_listeners(launcher_pid: int) -> list[Listener]:
    """Every TCP port the launcher and its descendants listen on."""
    launcher = psutil.Process(launcher_pid)
    listeners = []
    for process in [launcher, *launcher.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            for connection in process.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    address = connection.laddr
                    listeners.append(Listener(_role(process, launcher), address.ip, address.port))
    return listeners


def _send(target: tuple[str, int], data: bytes) -> None:
    with contextlib.suppress(OSError), socket.create_connection(target, timeout=5) as connection:
        connection.sendall(data)


@contextlib.contextmanager
def attacked(listeners: list[Listener], markers: Path) -> Iterator[None]:
    """Attack every listener; hold a silent and a half-framed connection to each until the block ends."""
    held: list[socket.socket] = []
    try:
        for listener in listeners:
            target = listener.loopback_target
            for kind in ("silent", "half-framed"):
                connection = socket.create_connection(target, timeout=5)
                if kind == "half-framed":
                    connection.sendall(b"\x00\x00")
                held.append(connection)
            payload = touch_pickle(markers / f"ran-{listener.port}")
            _send(target, struct.pack(">L", len(payload)) + payload)  # as a SocketHandler frames a record
            _send(target, payload)
            _send(target, os.urandom(4096))
        yield
    finally:
        for connection in held:
            connection.close()


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], console: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the job ended before its ranks ran:\n{console.read_text()}"
        assert time.monotonic() < deadline, f"the ranks did not run in {timeout:.0f} s:\n{console.read_text()}"
        time.sleep(0.2)


def _attack_running_job(
    command: list[str], ready: Callable[[str], bool], go: Callable[[], None], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str, list[Listener]]:
    """Start the job, attack it once ``ready(console)``, call ``go`` and wait for the job with the held
    connections still open. Returns the finished job, its console after the attack, and its listeners."""
    markers = tmp_path / "markers"
    markers.mkdir()
    console = tmp_path / "console.txt"
    with console.open("w") as stderr:
        job = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=subprocess_env(), cwd=REPO
        )
        try:
            _wait_for(lambda: ready(console.read_text()), job, console, JOB_TIMEOUT_S)
            listeners = job_listeners(job.pid)
            with attacked(listeners, markers):
                attack_ended = len(console.read_text())
                go()
                stdout, _ = job.communicate(timeout=JOB_TIMEOUT_S)  # held connections must not keep it waiting
        finally:
            job.kill()
            job.wait()
    assert not list(markers.iterdir()), "a pickled payload ran"
    text = console.read_text()
    return subprocess.CompletedProcess(command, job.returncode, stdout, text), text[attack_ended:], listeners


def test_train_survives_an_attack_on_every_port(tmp_path: Path) -> None:
    log_root = tmp_path / "runs"
    command = [
        str(TRAIN), "cartpole-balance", "--gpu-ids", "None", "--cpu-workers", "2", "--env.num-envs", "64",
        "--agent.max-iterations", str(ITERATIONS), "--log-root", str(log_root),
    ]  # fmt: skip
    job, after_attack, listeners = _attack_running_job(command, lambda text: "iter  1/" in text, lambda: None, tmp_path)

    assert job.returncode == 0, job.stderr
    assert sorted((listener.role, listener.scope) for listener in listeners) == EXPECTED_CPU_JOB
    assert "All 2 ranks ended with identical parameters" in after_attack
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["parameter_digest"]
    assert f"iter {ITERATIONS}/{ITERATIONS}" in after_attack  # rank 0's records still reach the console
    assert "Dropped a log record from 127.0.0.1:" in job.stderr  # the attack reached the log server


def test_launch_survives_an_attack_on_every_port(tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    script = (
        "import json, sys, mjdist\n"
        "from rank_functions import wait_for_go\n"
        "print(json.dumps(mjdist.launch(wait_for_go, sys.argv[1], gpu_ids=None, cpu_workers=2)))\n"
    )
    job, after_attack, listeners = _attack_running_job(
        [sys.executable, "-c", script, str(stamps)],
        lambda _: {path.name for path in stamps.iterdir()} >= {"ready-0", "ready-1"},
        lambda: (stamps / "go").touch(),
        tmp_path,
    )

    assert job.returncode == 0, job.stderr
    assert sorted((listener.role, listener.scope) for listener in listeners) == EXPECTED_CPU_JOB
    interface = loopback_interface()
    assert json.loads(job.stdout) == [
        {"rank": 0, "sum": 2.0, "gloo_interface": interface},
        {"rank": 1, "sum": 2.0, "gloo_interface": interface},
    ]
    assert "rank 0 went on" in after_attack
    assert any(line.startswith("[rank 1]") and "rank 1 went on" in line for line in after_attack.splitlines())
    assert "Dropped a log record from 127.0.0.1:" in job.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        pytest.param(
            [
                str(TRAIN),
                "cartpole-balance",
                "--gpu-ids",
                "None",
                "--env.num-envs",
                "64",
                "--agent.max-iterations",
                "2",
            ],
            [],
            id="train",
        ),
        pytest.param(
            [sys.executable, "-c", "import time, mjdist; mjdist.launch(time.sleep, 5, gpu_ids=None)"],
            [("launcher", "loopback")],  # the gloo socket of its group of one
            id="launch",
        ),
    ],
)
def test_one_process_listens_on_loopback_at_most(
    command: list[str], expected: list[tuple[str, str]], tmp_path: Path
) -> None:
    console = tmp_path / "console.txt"
    with console.open("w") as stderr:
        job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=subprocess_env(), cwd=tmp_path)
        seen: set[tuple[str, str]] = set()
        while job.poll() is None:
            with contextlib.suppress(psutil.Error):
                seen |= {(listener.role, listener.scope) for listener in job_listeners(job.pid)}
            time.sleep(0.2)
    assert job.returncode == 0, console.read_text()
    assert sorted(seen) == expected
