"""torchrunx across two hosts for real: the second host is a Linux network namespace with its own address and its
own sshd, reached with a generated key through ``--ssh-config``.

torchrunx runs an agent through a local shell for loopback names and this machine's own addresses, so only a
host with an address of its own exercises its SSH path. The fixture builds two namespaces joined by a veth pair
(``node0`` 10.231.0.1, where the launcher runs, and ``node1`` 10.231.0.2, with sshd), gives both an
``/etc/hosts`` (``ip netns exec`` mounts ``/etc/netns/<ns>/hosts`` over it) that maps this machine's
hostname to node0's address (torchrunx's agents call back to the launcher's ``socket.getfqdn()``) and
sets ``GLOO_SOCKET_IFNAME`` to the link, so all traffic stays on the namespaces' own addresses. It tears
everything down afterwards. Without root, ``ip`` or sshd (Debian: iproute2, openssh-server) the tests skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HELPERS, REPO, TRAIN, cannot_set_up, every_rank_agreed, subprocess_env
from test_interrupt import assert_saved_last_completed_iteration

pytestmark = pytest.mark.slow

SSHD = "/usr/sbin/sshd"
LINK = "mjlink"
ADDRESSES = ("10.231.0.1", "10.231.0.2")
DEADLINE_S = 15.0


@dataclass(frozen=True)
class TwoHosts:
    namespaces: tuple[str, str]
    ssh_config: Path

    def run_in_node0(self, args: list[str], log_dir: Path, **env: str) -> subprocess.Popen:
        """A command in node0 (the launcher's host), with stdout/stderr in log_dir."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[0], *args],
            stdout=(log_dir / "launcher.out").open("w"), stderr=(log_dir / "launcher.err").open("w"),
            env=subprocess_env(GLOO_SOCKET_IFNAME=LINK, MJDIST_TEST_SSH_CONFIG=str(self.ssh_config),
                               OMP_NUM_THREADS="1", **env), cwd=REPO,  # the two "hosts" share this machine's cores
        )  # fmt: skip

    def pids_in_node1(self) -> set[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespaces[1]], capture_output=True, text=True).stdout
        return {int(pid) for pid in out.split()}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian package iproute2)"
    if not Path(SSHD).exists():
        return f"no {SSHD} (Debian package openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "no ssh-keygen (Debian package openssh-client)"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    reason = _skip_reason()
    if reason:
        print(f"SKIP: {reason}")
        cannot_set_up(reason)
    work = tmp_path_factory.mktemp("ssh-hosts")
    namespaces = (f"mjd{os.getpid()}n0", f"mjd{os.getpid()}n1")
    veth = (f"mjd{os.getpid()}a"[-15:], f"mjd{os.getpid()}b"[-15:])
    sshd: subprocess.Popen | None = None
    try:
        try:
            _sh("ip", "netns", "add", namespaces[0])
        except subprocess.CalledProcessError as error:
            reason = f"cannot create a network namespace: {error.stderr.strip()}"
            print(f"SKIP: {reason}")
            cannot_set_up(reason)
        _sh("ip", "netns", "add", namespaces[1])
        _sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for namespace, end, address in zip(namespaces, veth, ADDRESSES, strict=True):
            _sh("ip", "link", "set", end, "netns", namespace)
            _sh("ip", "-n", namespace, "link", "set", end, "name", LINK)
            _sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", LINK)
            _sh("ip", "-n", namespace, "link", "set", LINK, "up")
            _sh("ip", "-n", namespace, "link", "set", "lo", "up")
            hosts_dir = Path("/etc/netns") / namespace  # `ip netns exec` mounts it over /etc/hosts
            hosts_dir.mkdir(parents=True, exist_ok=True)
            (hosts_dir / "hosts").write_text(
                f"127.0.0.1 localhost\n{ADDRESSES[0]} {socket.gethostname()} node0\n{ADDRESSES[1]} node1\n"
            )
            (hosts_dir / "resolv.conf").write_text("")  # no DNS server: lookups fail at once, not after a timeout
        sshd = _start_sshd(namespaces[1], work)
        yield TwoHosts(namespaces, _client_config(work))
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        for namespace in namespaces:
            _kill_processes_in(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # only if no other namespace uses it


def _start_sshd(namespace: str, work: Path) -> subprocess.Popen:
    """sshd on node1's address only, with its own host key and the generated client key as the only one allowed."""
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key"))
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key"))
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    config = work / "sshd_config"
    config.write_text(
        f"ListenAddress {ADDRESSES[1]}\nPort 22\nHostKey {work / 'host_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nStrictModes no\nUsePAM no\nMaxStartups 50\n"
    )
    sshd = subprocess.Popen(
        ["ip", "netns", "exec", namespace, SSHD, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL, stderr=(work / "sshd.log").open("w"),
    )  # fmt: skip
    end = time.time() + 10
    while time.time() < end:
        probe = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c",
                                f"import socket; socket.create_connection(('{ADDRESSES[1]}', 22), 1)"],
                               capture_output=True)  # fmt: skip
        if probe.returncode == 0:
            return sshd
        time.sleep(0.2)
    raise RuntimeError(f"sshd did not start: {(work / 'sshd.log').read_text()}")


def _client_config(work: Path) -> Path:
    config = work / "ssh_config"
    config.write_text(
        f"Host {ADDRESSES[1]}\n  User root\n  IdentityFile {work / 'client_key'}\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    return config


def _kill_processes_in(namespace: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def launch_task(hosts: TwoHosts, log_root: Path, iterations: int, **env: str) -> subprocess.Popen:
    """tests/helpers/launch_task.py in node0: one CPU rank on each of node0 and node1 (over SSH)."""
    command = [sys.executable, str(HELPERS / "launch_task.py"), str(log_root), "1", str(iterations), *ADDRESSES]
    return hosts.run_in_node0(command, log_root.parent, **env)


def test_one_rank_on_each_host_trains_with_identical_parameters(two_hosts: TwoHosts, log_root: Path) -> None:
    started = time.time()
    launcher = launch_task(two_hosts, log_root, iterations=3)
    code = launcher.wait(timeout=300)
    stderr = (log_root.parent / "launcher.err").read_text()
    assert code == 0, stderr
    print(f"2 hosts over SSH: {time.time() - started:.1f} s for 3 iterations")
    ranks = json.loads((log_root.parent / "launcher.out").read_text())
    assert [rank["rank"] for rank in ranks] == [0, 1]
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]
    assert ranks[0]["observation_digest"] != ranks[1]["observation_digest"]  # seeds 42 and 43
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    summary = every_rank_agreed(run_dir, 2)
    assert summary["hosts"] == list(ADDRESSES) and summary["rank_digests"] == [r["parameter_digest"] for r in ranks]
    (log_dir,) = (run_dir / "torchrunx").iterdir()  # the launcher collects every host's logs
    logs = {path.name for path in log_dir.iterdir()}
    assert {f"{ADDRESSES[0]}[0].log", f"{ADDRESSES[1]}[0].log", f"{ADDRESSES[1]}.log"} <= logs
    assert two_hosts.pids_in_node1() <= _sshd_pids(two_hosts), "nothing but sshd is left on node1"


def test_a_failing_rank_on_the_remote_host_ends_the_job_with_its_traceback(two_hosts: TwoHosts, log_root: Path) -> None:
    stamp = log_root.parent / "fault-time"
    launcher = launch_task(two_hosts, log_root, iterations=200, MJDIST_TEST_FAULT="raise:1:40",
                           MJDIST_TEST_FAULT_STAMP=str(stamp))  # fmt: skip
    end = time.time() + 240
    while not stamp.exists() and time.time() < end and launcher.poll() is None:
        time.sleep(0.1)
    stderr_path = log_root.parent / "launcher.err"
    assert stamp.exists(), stderr_path.read_text()
    code = launcher.wait(timeout=120)
    seconds = time.time() - float(stamp.read_text())
    stderr = stderr_path.read_text()
    assert code == 1, stderr
    assert seconds < DEADLINE_S, seconds
    assert "[rank 1] faulty_task.InjectedFault: injected fault at step 40" in stderr
    assert stderr.strip().splitlines()[-1] == "Training failed: rank 1: InjectedFault: injected fault at step 40"
    time.sleep(1.0)
    assert two_hosts.pids_in_node1() <= _sshd_pids(two_hosts), "the remote agent and rank are gone"


def test_a_host_that_refuses_the_key_is_named_before_anything_starts(
    two_hosts: TwoHosts, log_root: Path, tmp_path: Path
) -> None:
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "unknown_key"))
    config = tmp_path / "ssh_config"
    config.write_text(re.sub(r"IdentityFile \S+", f"IdentityFile {tmp_path / 'unknown_key'}",
                             two_hosts.ssh_config.read_text()))  # fmt: skip
    train = [str(TRAIN), "cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--hosts", *ADDRESSES]
    launcher = two_hosts.run_in_node0([*train, "--ssh-config", str(config)], tmp_path)
    assert launcher.wait(timeout=120) == 2
    (line,) = (tmp_path / "launcher.err").read_text().strip().splitlines()
    assert re.fullmatch(
        re.escape(f"train: error: host {ADDRESSES[1]} does not accept a non-interactive SSH login (ssh -F {config}, "
                  f"BatchMode): root@{ADDRESSES[1]}: Permission denied (publickey") + r"[^)]*"
        + re.escape("); fix the host, key or config, or skip this check with --no-host-check"),
        line,
    ), line  # fmt: skip
    assert not log_root.exists()
    assert two_hosts.pids_in_node1() <= _sshd_pids(two_hosts), "nothing started on node1"


def _wait_for_iteration(launcher: subprocess.Popen, stderr_path: Path, iteration: int) -> None:
    """Until rank 0 has printed the progress line of ``iteration`` (of the 500 that launch_task runs here)."""
    printed = re.compile(rf"^iter +{iteration}/500 ", re.MULTILINE)
    end = time.time() + 240
    while not printed.search(stderr_path.read_text()) and time.time() < end and launcher.poll() is None:
        time.sleep(0.1)
    assert printed.search(stderr_path.read_text()), stderr_path.read_text()


def _sshd_pids(hosts: TwoHosts) -> set[int]:
    return {pid for pid in hosts.pids_in_node1() if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"}


def test_interrupting_the_launcher_stops_the_remote_rank_after_rank_0_saved(
    two_hosts: TwoHosts, log_root: Path
) -> None:
    launcher = launch_task(two_hosts, log_root, iterations=500)
    stderr_path = log_root.parent / "launcher.err"
    _wait_for_iteration(launcher, stderr_path, 2)
    sent = time.time()
    launcher.send_signal(signal.SIGINT)
    code = launcher.wait(timeout=120)
    stderr = stderr_path.read_text()
    assert code == 130, stderr
    assert time.time() - sent < DEADLINE_S
    assert_saved_last_completed_iteration(stderr, "faulty-cartpole")  # the remote rank stopped at the same boundary
    time.sleep(1.0)
    assert two_hosts.pids_in_node1() <= _sshd_pids(two_hosts), "the remote agent and rank are gone"


def test_a_dead_remote_agent_ends_the_job(two_hosts: TwoHosts, log_root: Path) -> None:
    launcher = launch_task(two_hosts, log_root, iterations=500)
    stderr_path = log_root.parent / "launcher.err"
    _wait_for_iteration(launcher, stderr_path, 1)
    (agent,) = (pid for pid in two_hosts.pids_in_node1()  # the agent's Python, not the shell that started it
                if _cmdline(pid).startswith(f"{sys.executable} -u -m torchrunx"))  # fmt: skip
    killed = time.time()
    os.kill(agent, signal.SIGKILL)
    code = launcher.wait(timeout=120)
    stderr = stderr_path.read_text()
    assert code == 1, stderr
    assert time.time() - killed < DEADLINE_S
    assert stderr.strip().splitlines()[-1].startswith("Training failed: ")
    time.sleep(1.0)
    assert two_hosts.pids_in_node1() <= _sshd_pids(two_hosts), "the remote rank died with its agent"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
