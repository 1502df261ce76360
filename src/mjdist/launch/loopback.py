"""Keep a one-host job's gloo connections on the loopback interface.

gloo listens on the address of the interface it picks (``GLOO_SOCKET_IFNAME``, else the address this host's name
resolves to): on a cluster node, its network address, reachable from other hosts. When every rank runs on this
host, nothing but this host needs to reach them, so a launch sets ``GLOO_SOCKET_IFNAME`` to the loopback interface
for the launcher's own gloo group (launcher and agents) and, copied with ``GLOO_*``, for the ranks'. A user's own
``GLOO_SOCKET_IFNAME`` wins. torch's rendezvous stores (``TCPStore``) cannot be narrowed this way: they listen on
every interface, whatever their host name (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator, Sequence

import psutil

from mjdist.launch.hosts import is_loopback

GLOO_INTERFACE = "GLOO_SOCKET_IFNAME"


def loopback_interface() -> str | None:
    """The name of the interface that holds 127.0.0.1 (``lo`` on Linux), None if there is none."""
    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(address.address) == ipaddress.IPv4Address("127.0.0.1"):
                    return name
    return None


@contextlib.contextmanager
def gloo_on_loopback(hosts: Sequence[str]) -> Iterator[None]:
    """While open, gloo uses the loopback interface if ``hosts`` is this host alone and the user chose none."""
    interface = loopback_interface()
    if len(hosts) != 1 or not is_loopback(hosts[0]) or GLOO_INTERFACE in os.environ or interface is None:
        yield
        return
    os.environ[GLOO_INTERFACE] = interface
    try:
        yield
    finally:
        os.environ.pop(GLOO_INTERFACE, None)
