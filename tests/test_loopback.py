"""A one-host launch keeps gloo on the loopback interface; other launches and a user's choice are left alone."""

from __future__ import annotations

import os

import pytest

from mjdist.launch.loopback import GLOO_INTERFACE, gloo_on_loopback, loopback_interface


def test_this_machine_has_a_loopback_interface() -> None:
    assert loopback_interface() == "lo"


def test_a_one_host_launch_sets_gloo_to_loopback_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GLOO_INTERFACE, raising=False)
    with gloo_on_loopback(("localhost",)):
        assert os.environ[GLOO_INTERFACE] == "lo"
    assert GLOO_INTERFACE not in os.environ


@pytest.mark.parametrize("hosts", [("node1",), ("10.0.0.1", "node2")])
def test_ranks_on_other_hosts_keep_gloos_own_choice(monkeypatch: pytest.MonkeyPatch, hosts: tuple[str, ...]) -> None:
    monkeypatch.delenv(GLOO_INTERFACE, raising=False)
    with gloo_on_loopback(hosts):
        assert GLOO_INTERFACE not in os.environ


def test_the_users_interface_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GLOO_INTERFACE, "eth0")
    with gloo_on_loopback(("localhost",)):
        assert os.environ[GLOO_INTERFACE] == "eth0"
    assert os.environ[GLOO_INTERFACE] == "eth0"
