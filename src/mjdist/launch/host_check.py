"""Hosts checked before a launch: every name resolves, and every remote host answers a non-interactive SSH probe.

torchrunx looks every host name up (``socket.gethostbyname``) to tell this machine from the others, then starts an
agent on each other host over SSH: ``cd <the launcher's working directory> && <the launcher's Python> -m
torchrunx ...``. The probe runs the same steps through the same SSH config, with OpenSSH's ``BatchMode`` (never a
prompt) and a short connect timeout, and imports mjdist there. A failure is one line naming the host and the reason
(SSH's own, such as ``Permission denied (publickey)``), before anything starts; ``--no-host-check`` skips it.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mjdist.launch.devices import DeviceSelectionError

CONNECT_TIMEOUT_S = 10
"""OpenSSH's ConnectTimeout for the probe."""
PROBE_TIMEOUT_S = 60.0
"""The whole probe of one host: connecting, logging in and importing mjdist there."""
SKIP_HINT = "or skip this check with --no-host-check"
NO_DIRECTORY, NO_PYTHON = 3, 4
"""The probe's exit codes when the working directory or the Python is missing on the host."""


def check_hosts(
    hosts: Sequence[str],
    ssh_config: str | None,
    environ: Mapping[str, str],
    python: str = sys.executable,
    workdir: Path | None = None,
) -> None:
    """Raise DeviceSelectionError (one line) for the first host that does not resolve, then for the first remote host
    whose probe fails (probes run in parallel). ``environ``'s PYTHONPATH is set for the probe, as torchrunx copies
    it to its agents."""
    remote = [host for host in hosts if not runs_here(host, _address(host))]
    if not remote:
        return
    if shutil.which("ssh") is None:
        raise DeviceSelectionError(
            f"cannot check --hosts {' '.join(remote)}: there is no ssh command (OpenSSH client) on PATH; install it "
            f"(apt-get install openssh-client), {SKIP_HINT}"
        )
    command = _probe_command(python, workdir or Path.cwd(), environ.get("PYTHONPATH"))
    with ThreadPoolExecutor(len(remote)) as pool:
        failures = list(pool.map(lambda host: _probe(host, ssh_config, command, python, workdir), remote))
    for failure in failures:
        if failure is not None:
            raise DeviceSelectionError(failure)


def _address(host: str) -> str:
    """``host`` if it is an address, else the IPv4 address torchrunx looks it up as."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise DeviceSelectionError(
            f"host {host} does not resolve ({reason}); give --hosts names or addresses this machine can look up"
        ) from None


def runs_here(host: str, address: str) -> bool:
    """Whether torchrunx starts ``host``'s agent through a local shell (a loopback address, or one of this machine's
    hostname's addresses) rather than over SSH; the same test torchrunx 0.4 makes."""
    if ipaddress.ip_address(address).is_loopback:
        return True
    try:
        ours = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:
        return False
    return bool({info[4][0] for info in socket.getaddrinfo(address, None)} & ours)


def _probe_command(python: str, workdir: Path, pythonpath: str | None) -> str:
    """The shell command run on each remote host: what its agent will need, in the order the agent needs it."""
    steps = [f"cd {shlex.quote(str(workdir))} || exit {NO_DIRECTORY}"]
    if pythonpath:
        steps.append(f"export {shlex.quote(f'PYTHONPATH={pythonpath}')}")
    steps.append(f"test -x {shlex.quote(python)} || exit {NO_PYTHON}")
    steps.append(f"exec {shlex.quote(python)} -c 'import mjdist'")
    return "; ".join(steps)


def _probe(host: str, ssh_config: str | None, command: str, python: str, workdir: Path | None) -> str | None:
    """None if ``host`` passes the probe, else the one-line reason."""
    config = ["-F", ssh_config] if ssh_config else []
    argv = ["ssh", *config, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", host, command]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"host {host} did not finish the SSH probe within {PROBE_TIMEOUT_S:g} s; check it, {SKIP_HINT}"
    if done.returncode == 0:
        return None
    said = _last_line(done.stderr)
    if done.returncode == 255:  # ssh's own failure
        via = f"ssh -F {ssh_config}" if ssh_config else "ssh with ~/.ssh/config"
        return (
            f"host {host} does not accept a non-interactive SSH login ({via}, BatchMode): {said}; fix the host, "
            f"key or config, {SKIP_HINT}"
        )
    if done.returncode == NO_DIRECTORY:
        return (
            f"host {host} has no directory {workdir or Path.cwd()}; ranks start in the launcher's working directory, "
            f"which must exist on every host ({SKIP_HINT})"
        )
    if done.returncode == NO_PYTHON:
        return (
            f"host {host} has no Python at {python}; ranks start with the launcher's Python, which must be at the "
            f"same path on every host ({SKIP_HINT})"
        )
    return (
        f"mjdist is not installed at {python} on host {host} ({said or f'exit {done.returncode}'}); install the "
        f"same environment at the same path on every host, {SKIP_HINT}"
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].rstrip(".") if lines else ""
