"""Which hosts a torchrunx launch starts ranks on: ``--hosts``, ``--hosts auto`` (a SLURM allocation) and the
checks that keep a multi-host launch from failing late (a loopback first host, a host named twice, a missing
SSH config file).

``auto`` goes through torchrunx's own detection: inside a SLURM job (``SLURM_JOB_ID``) the hosts are those of
``scontrol show hostnames``; outside one, this host only.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from mjdist.launch.devices import DeviceSelectionError

LOCALHOST = "localhost"
AUTO = "auto"


def resolve_hosts(hosts: Sequence[str], ssh_config: Path | None) -> tuple[str, ...]:
    """The hosts in rank order (global rank = host index, then local rank); DeviceSelectionError if invalid."""
    if ssh_config is not None and not ssh_config.is_file():
        raise DeviceSelectionError(f"--ssh-config {ssh_config}: no such file; give an OpenSSH client config file")
    if not hosts:
        return (LOCALHOST,)
    if AUTO in hosts:
        if len(hosts) > 1:
            raise DeviceSelectionError("--hosts auto cannot be combined with host names; give --hosts auto on its own")
        from torchrunx.utils.environment import auto_hosts  # torchrunx imports torch: only when needed

        return _detected_hosts(auto_hosts)
    return _checked(tuple(hosts))


def _detected_hosts(detect: Callable[[], list[str]]) -> tuple[str, ...]:
    try:
        found = [host for host in detect() if host]
    except FileNotFoundError as error:
        raise DeviceSelectionError(
            f"--hosts auto: this is a SLURM job, but {error.filename or 'scontrol'} is not on PATH; "
            "load SLURM's tools or name the hosts with --hosts H1 H2"
        ) from error
    except subprocess.CalledProcessError as error:
        raise DeviceSelectionError(
            f"--hosts auto: 'scontrol show hostnames' failed (exit {error.returncode}); "
            "run inside a SLURM allocation or name the hosts with --hosts H1 H2"
        ) from error
    if not found:
        raise DeviceSelectionError("--hosts auto: the SLURM allocation lists no hosts; name them with --hosts H1 H2")
    return _checked(tuple(found))


def _checked(hosts: tuple[str, ...]) -> tuple[str, ...]:
    for host in hosts:
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            raise DeviceSelectionError(f"{host!r} is not a host name; give names or addresses like --hosts node1 node2")
        if hosts.count(host) > 1:
            raise DeviceSelectionError(f"host {host} is given twice in --hosts; list each host once")
    if len(hosts) > 1:
        for host in hosts:
            if is_loopback(host):
                raise DeviceSelectionError(
                    f"--hosts {' '.join(hosts)}: {host} is this machine's loopback name, which other hosts cannot "
                    "reach; name this host by an address or hostname every host can reach (it should come first)"
                )
    return hosts


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); names are not looked up."""
    if host.lower() == LOCALHOST or host.lower().startswith(LOCALHOST + "."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
