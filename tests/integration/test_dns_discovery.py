"""DNS discovery with a real resolver (product.md section 9, issue 15).

dnsmasq, started here, answers for db.relay.test from its hosts file, on the host end of
a network namespace's veth; the namespace's resolv.conf names it and relay runs inside.
Backends listen on one port at several addresses routed into the namespace. While
sessions flow, records are added and removed (hosts file edited, dnsmasq SIGHUPed), and
then dnsmasq is stopped (SIGSTOP: a resolver that never answers): the last answer stays
and no session waits for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool
from tests.support.netns import Netns
from tests.support.process import stop_process
from tests.support.relayproc import RelayProcess, admin_request
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for

NAME = "db.relay.test"
INTERVAL = 0.3  # resolve_interval
DNS_TIMEOUT = 1  # resolv.conf: a lookup to a stopped dnsmasq blocks this long at least
ROUND_LIMIT = 20_000  # client rounds at most (bounded also by time)


def _ident(conn: socket.socket) -> None:
    """Says which address it is, then echoes."""
    conn.sendall(conn.getsockname()[0].encode() + b"\n")
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)  # the session ends both ways


@pytest.fixture
def dns_ns(tmp_path: Path) -> Iterator[tuple[Netns, list[str], Path]]:
    """A namespace; three backend addresses routed into it; a dnsmasq for it on the host end.
    Yields the namespace, the addresses, and dnsmasq's hosts file."""
    dnsmasq = require_tool("dnsmasq")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("network namespaces need root (CI runs as root)")
        pytest.skip("network namespaces need root")
    subnet = 90 + os.getpid() % 60
    ns = Netns(f"rdsc{os.getpid() % 100000}", subnet)
    extra = [f"10.232.{subnet}.{i}" for i in (1, 2, 3)]
    etc = Path("/etc/netns") / ns.name
    hosts = tmp_path / "dns-hosts"
    proc: subprocess.Popen[bytes] | None = None
    try:
        ns.create()
        for address in extra:
            subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", ns.host_if], check=True)
        subprocess.run(["ip", "netns", "exec", ns.name, "ip", "route", "add",
                        f"10.232.{subnet}.0/24", "via", ns.host_ip], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {ns.host_ip}\noptions timeout:{DNS_TIMEOUT} attempts:1\n")
        (etc / "nsswitch.conf").write_text("hosts: dns\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        hosts.write_text(f"{extra[0]} {NAME}\n{extra[1]} {NAME}\n")
        proc = subprocess.Popen([dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                 f"--addn-hosts={hosts}", f"--listen-address={ns.host_ip}",
                                 "--bind-interfaces", "--port=53", "--local-ttl=0",
                                 "--cache-size=0", "--pid-file=", "--user=root",
                                 "--log-facility=-"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers(ns) == sorted(extra[:2]), timeout=10)
        yield ns, extra, hosts
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGCONT)
            stop_process(proc)
        shutil.rmtree(etc, ignore_errors=True)
        ns.remove()


def _answers(ns: Netns) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns.name, "getent", "ahostsv4", NAME],
                         capture_output=True, text=True, timeout=10).stdout
    return sorted({line.split()[0] for line in out.splitlines() if line})


def _config(ns: Netns, port: int) -> str:
    return f"""
[admin]
listen = "{ns.ip}:0"

[runtime]
log_format = "json"
shutdown_grace = "2s"

[[listener]]
name = "db"
listen = "{ns.ip}:0"
balance = "round_robin"
[listener.health]
interval = "200ms"
timeout = "200ms"
[[listener.backend]]
name = "db"
address = "{NAME}:{port}"
discover = "dns"
resolve_interval = "{int(INTERVAL * 1000)}ms"
"""


class Client(threading.Thread):
    """New sessions one after another: connect, read the backend's address, one echo."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.rounds: list[tuple[float, str, float]] = []  # (start, backend address, seconds)
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for _ in range(ROUND_LIMIT):
            if self.stop.wait(0.005):
                return
            start = time.monotonic()
            try:
                with socket.create_connection((self.host, self.port), timeout=10) as conn:
                    reader = conn.makefile("rb")
                    ident = reader.readline().decode().strip()
                    conn.sendall(b"ping\n")
                    assert reader.readline() == b"ping\n"
                    reader.close()
                self.rounds.append((start, ident, time.monotonic() - start))
            except (OSError, AssertionError) as exc:
                self.errors.append(repr(exc))

    def seen(self, since: float) -> Counter[str]:
        return Counter(ident for start, ident, _ in self.rounds if start >= since)

    def worst(self, start: float, end: float = float("inf")) -> float:
        return max(s for t, _, s in self.rounds if start <= t < end)



def test_records_come_and_go_while_traffic_flows_and_a_dead_resolver_stalls_nothing(
        dns_ns, tmp_path):
    ns, extra, hosts = dns_ns
    first = ThreadServer(_ident, host=extra[0])
    port = first.port
    servers = [first, *(ThreadServer(_ident, host=a, port=port) for a in extra[1:])]
    relay = RelayProcess(_config(ns, port), tmp_path, prefix=("ip", "netns", "exec", ns.name))
    client: Client | None = None
    held: socket.socket | None = None
    try:
        relay.wait_ready()
        admin = relay.wait_event(lambda e: e.get("event") == "admin_open")
        admin_port = int(str(admin["address"]).rsplit(":", 1)[1])
        names = [f"db/{a}:{port}" for a in extra]
        # start-up knew one address; the first lookup adds the other record
        both = sorted(f"{a}:{port}" for a in extra[:2])
        relay.wait_event(lambda e: e.get("event") == "discovery_change"
                         and sorted([*e["added"], *e["kept"]]) == both, timeout=10)
        client = Client(ns.ip, relay.port())
        client.start()
        wait_for(lambda: set(client.seen(0)) == set(extra[:2]), timeout=15)
        # a session held open on the record that will go: it must finish, not be cut
        for _ in range(20):
            conn = socket.create_connection((ns.ip, relay.port()), timeout=10)
            if conn.recv(64).strip() == extra[0].encode():
                held = conn
                break
            conn.close()
        assert held is not None

        scraped = admin_request(admin_port, "GET", "/metrics", host=ns.ip)[1]  # a scrape
        assert f'backend="{names[0]}"' in scraped
        # extra[0] goes, extra[2] comes
        hosts.write_text(f"{extra[1]} {NAME}\n{extra[2]} {NAME}\n")
        dnsmasq_pid = _dnsmasq_pid(hosts)
        os.kill(dnsmasq_pid, signal.SIGHUP)
        change = relay.wait_event(lambda e: e.get("event") == "discovery_change"
                                  and e.get("drained") == [f"{extra[0]}:{port}"], timeout=10)
        assert change["added"] == [f"{extra[2]}:{port}"]
        assert change["kept"] == [f"{extra[1]}:{port}"]
        after = time.monotonic()
        wait_for(lambda: set(client.seen(after)) == set(extra[1:]), timeout=15)
        assert extra[0] not in client.seen(after), "a new session went to a drained record"
        held.sendall(b"still here\n")
        assert held.recv(64) == b"still here\n", "the drained backend's session was cut"
        metrics = admin_request(admin_port, "GET", "/metrics", host=ns.ip)[1]
        assert f'backend="{names[0]}"' in metrics  # its session is open: its series stay
        held.close()
        held = None
        # closed, shown once, then gone
        wait_for(lambda: f'backend="{names[0]}"'
                 not in admin_request(admin_port, "GET", "/metrics", host=ns.ip)[1], timeout=10)

        # a resolver that never answers: the last answer stays, nothing waits for it
        baseline_start = time.monotonic()
        time.sleep(1.0)
        baseline_end = time.monotonic()
        unloaded = client.worst(baseline_start, baseline_end)
        os.kill(dnsmasq_pid, signal.SIGSTOP)
        failed = relay.wait_event(lambda e: e.get("event") == "discovery_failed", timeout=20)
        assert failed["kept"] == sorted(f"{a}:{port}" for a in extra[1:])
        time.sleep(max(3 * INTERVAL, 2 * DNS_TIMEOUT) * 2)  # several more lookups fail
        window_end = time.monotonic()
        assert relay.count("discovery_failed") == 1  # logged once
        metrics = admin_request(admin_port, "GET", "/metrics", host=ns.ip)[1]
        failures = [line for line in metrics.splitlines()
                    if line.startswith("relay_backend_resolve_failures_total")
                    and names[1] in line]
        assert failures and float(failures[0].split()[-1]) >= 2, failures
        assert set(client.seen(baseline_end)) == set(extra[1:])
        worst = client.worst(baseline_end, window_end)
        print(f"\nunloaded worst session round {unloaded * 1e3:.2f} ms; with the resolver "
              f"dead ({window_end - baseline_end:.1f} s) worst {worst * 1e3:.2f} ms")
        assert worst < DNS_TIMEOUT / 4, (worst, unloaded)
        os.kill(dnsmasq_pid, signal.SIGCONT)
        relay.wait_event(lambda e: e.get("event") == "discovery_recovered", timeout=20)
        client.stop.set()
        client.join(15)
        assert not client.errors, client.errors[:5]
        relay.signal(signal.SIGTERM)
        assert relay.wait(15) == 0
    finally:
        if client is not None:
            client.stop.set()
            client.join(15)
        if held is not None:
            held.close()
        relay.stop()
        for server in servers:
            with contextlib.suppress(OSError):
                server.close()


def _dnsmasq_pid(hosts: Path) -> int:
    """The dnsmasq this test started (its command line names this test's hosts file)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                if f"--addn-hosts={hosts}".encode() in f.read().split(b"\0"):
                    return int(entry)
    raise AssertionError("dnsmasq not found")
