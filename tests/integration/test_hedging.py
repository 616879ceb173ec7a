"""Connect hedging against a primary host that vanished (its SYNs go nowhere)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.conftest import IN_CI
from tests.support.named import ask
from tests.support.netns import Netns, named_backend_in
from tests.support.servers import ThreadServer
from tests.support.wait import wait_listening

CONNECT_TIMEOUT = 2.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def primary_host():
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("network namespaces need root (CI runs as root)")
        pytest.skip("network namespaces need root")
    ns = Netns(f"hg{os.getpid() % 100000}", 73)
    try:
        ns.create()
        server = named_backend_in(ns, "primary", 7000, REPO)
        try:
            wait_listening(7000, lambda: server.poll() is None, "the primary in the namespace",
                           host=ns.ip)
            yield ns
        finally:
            server.kill()
            server.wait()
    finally:
        ns.remove()


def _named_backup() -> ThreadServer:
    def handler(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            for _ in reader:
                conn.sendall(b"backup\n")
        finally:
            reader.close()

    return ThreadServer(handler)


@pytest.mark.parametrize("hedge", ["auto", "off"])
def test_blackholed_primary_costs_milliseconds_with_hedging(start_relay, primary_host, hedge):
    backup = _named_backup()
    try:
        relay = start_relay([{
            "name": "db", "listen": "127.0.0.1:0", "connect_timeout": CONNECT_TIMEOUT,
            "health": {"kind": "none"},  # only sessions touch the backends: counts stay exact
            "retry": {"attempts": 3, "deadline": "6s", "hedge": hedge},
            "backends": [{"name": "primary", "address": f"{primary_host.ip}:7000", "tier": 0},
                         {"name": "backup", "address": f"127.0.0.1:{backup.port}", "tier": 1}]}],
            # (the vanished primary's sessions never end by themselves: no 5 s grace at the stop)
            runtime={"shutdown_grace": "1s"})
        port = relay.port()
        for _ in range(20):  # relay learns the primary's usual connect time
            assert ask(port) == "primary"
        assert backup.accepted == 0
        primary_host.vanish()
        waits = []
        for _ in range(10):
            t0 = time.monotonic()
            assert ask(port) == "backup"  # zero errors
            waits.append(time.monotonic() - t0)
        print(f"\nhedge={hedge}: time to first byte after the primary vanished (s): "
              + " ".join(f"{w:.3f}" for w in waits))
        assert backup.accepted == 10  # one backend connection per client session, no more
        if hedge == "auto":
            # every session is answered long before connect_timeout: the hedge fires after a
            # few multiples of the usual connect time (capped at connect_timeout / 4)
            assert max(waits) < CONNECT_TIMEOUT / 4 + 0.2
            time.sleep(0.3)
            metrics = relay.http("GET", "/metrics")[1]
            assert 'relay_connect_hedges_total{listener="db",outcome="hedge_won"}' in metrics
            hedge_won = float(metrics.split(
                'relay_connect_hedges_total{listener="db",outcome="hedge_won"} ')[1].split()[0])
            assert hedge_won >= 1
        else:
            assert waits[0] >= CONNECT_TIMEOUT * 0.9  # without hedging the first waits it out
    finally:
        backup.close()
