"""A resolver that never answers delays only the backend being resolved (product.md §4).

relay runs in a network namespace whose resolv.conf names a nameserver that reads
queries and never answers, so every DNS lookup blocks for resolv.conf's timeout x
attempts. The backend's host name is in the namespace's hosts file at start (so relay
starts), then taken out: its lookups on the down transition and on SIGHUP go to the
dead nameserver while sessions on another listener keep echoing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.netns import Netns
from tests.support.relayproc import RelayProcess, admin_request
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for

DNS_TIMEOUT = 3  # resolv.conf: seconds per query; a blocking lookup stalls at least this long
DNS_ATTEMPTS = 2
NAME = "db.relay.test"
SAMPLE_GAP = 0.002  # between echo round trips
WINDOW_LIMIT = 40.0  # the events of the window come within relay's 5 s resolve timeout; bound


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@pytest.fixture
def dead_dns(tmp_path: Path) -> Iterator[tuple[Netns, Path]]:
    """A namespace whose nameserver (a UDP socket on the host end of its veth) never
    answers; yields it and its /etc/netns directory (resolv.conf, hosts, nsswitch.conf)."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("network namespaces need root (CI runs as root)")
        pytest.skip("network namespaces need root")
    ns = Netns(f"rdns{os.getpid() % 100000}", 74)
    etc = Path("/etc/netns") / ns.name
    nameserver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ns.create()
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {ns.host_ip}\noptions timeout:{DNS_TIMEOUT} attempts:{DNS_ATTEMPTS}\n")
        (etc / "nsswitch.conf").write_text("hosts: files dns\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{ns.host_ip} {NAME}\n")
        nameserver.bind((ns.host_ip, 53))  # bound, never read: no answer, no ICMP refusal
        yield ns, etc
    finally:
        nameserver.close()
        shutil.rmtree(etc, ignore_errors=True)
        ns.remove()


def _config(ns: Netns, echo_port: int, db_port: int, workers: int) -> str:
    return f"""
[admin]
listen = "{ns.ip}:0"

[runtime]
workers = {workers}
log_format = "json"
shutdown_grace = "2s"

[[listener]]
name = "echo"
listen = "{ns.ip}:0"
[listener.health]
kind = "none"
[[listener.backend]]
name = "echo"
address = "{ns.host_ip}:{echo_port}"

[[listener]]
name = "db"
listen = "{ns.ip}:0"
[listener.health]
interval = "200ms"
timeout = "200ms"
fall = 1
rise = 1
[[listener.backend]]
name = "db"
address = "{NAME}:{db_port}"
"""


class EchoTimer(threading.Thread):
    """One session on the echo listener: a small round trip every SAMPLE_GAP, timed."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = socket.create_connection((host, port), timeout=30)
        self.samples: list[tuple[float, float]] = []  # (when sent, round trip)
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for _ in range(200_000):  # bounded, and by time below
                if self.stop.wait(SAMPLE_GAP):
                    return
                sent = time.monotonic()
                self.conn.sendall(b"ping-1234567890\n")
                got = b""
                while len(got) < 16:
                    chunk = self.conn.recv(16 - len(got))
                    assert chunk, "the echo session was closed"
                    got += chunk
                self.samples.append((sent, time.monotonic() - sent))
        except BaseException as exc:
            self.error = exc
        finally:
            self.conn.close()

    def worst(self, start: float, end: float = float("inf")) -> float:
        return max(rtt for sent, rtt in self.samples if start <= sent < end)


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms; each probe must answer well within the DNS stall."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.results: list[tuple[float, object]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for _ in range(1000):
            if self.stop.wait(0.1):
                return
            conn = http.client.HTTPConnection(self.host, self.port, timeout=DNS_TIMEOUT / 2)
            try:
                conn.request("GET", "/healthz")
                self.results.append((time.monotonic(), conn.getresponse().status))
            except OSError as exc:
                self.results.append((time.monotonic(), repr(exc)))
            finally:
                conn.close()


def _blocking_lookup_seconds(ns: Netns) -> subprocess.Popen[bytes]:
    """What a plain getaddrinfo of NAME costs in the namespace now (the stall relay avoids)."""
    code = ("import socket, time; t = time.monotonic()\n"
            "try: socket.getaddrinfo(sys_name, 1)\nexcept OSError: pass\n"
            "print(time.monotonic() - t)").replace("sys_name", repr(NAME))
    return subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", code],
                            stdout=subprocess.PIPE)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dead_resolver_stalls_no_session_on_down_transition_or_reload(dead_dns, tmp_path,
                                                                       workers):
    """With workers = 2 the echo session is a worker's: it must not stall either."""
    ns, etc = dead_dns
    echo = ThreadServer(_echo, host=ns.host_ip)
    db = ThreadServer(_echo, host=ns.host_ip)
    relay = RelayProcess(_config(ns, echo.port, db.port, workers), tmp_path,
                         prefix=("ip", "netns", "exec", ns.name))
    timer: EchoTimer | None = None
    probe: HealthProbe | None = None
    lookup: subprocess.Popen[bytes] | None = None
    try:
        relay.wait_ready(listeners=2)
        admin = relay.wait_event(lambda e: e.get("event") == "admin_open")
        admin_port = int(str(admin["address"]).rsplit(":", 1)[1])
        timer = EchoTimer(ns.ip, relay.port("echo"))
        probe = HealthProbe(ns.ip, admin_port)
        started = 1 + (workers if workers > 1 else 0)  # the supervisor's and each worker's
        wait_for(lambda: relay.count("relay_started") == started, timeout=15)
        timer.start()
        probe.start()
        wait_for(lambda: len(timer.samples) >= 20, timeout=15)  # warmed up
        baseline_start = time.monotonic()
        time.sleep(1.0)  # the unloaded figure: round trips before anything happens
        baseline_end = time.monotonic()
        unloaded = timer.worst(baseline_start, baseline_end)

        # The name leaves the hosts file (same inode: the namespace's bind mount sees it),
        # so from now on it is asked of the nameserver that never answers.
        with open(etc / "hosts", "w") as f:
            f.write("127.0.0.1 localhost\n")
        lookup = _blocking_lookup_seconds(ns)
        db.close()  # the backend named by host goes down: relay looks its name up again
        relay.wait_event(lambda e: e.get("event") == "backend_down", timeout=10)
        relay.signal(signal.SIGHUP)  # and the reload resolves the name again
        rejected = relay.wait_event(lambda e: e.get("event") == "reload_rejected",
                                    timeout=WINDOW_LIMIT)
        failed = relay.wait_event(lambda e: e.get("event") == "resolve_failed", timeout=10)
        window_end = time.monotonic()
        stall, _ = lookup.communicate(timeout=60)
        blocking = float(stall)

        timer.stop.set()
        probe.stop.set()
        timer.join(10)
        probe.join(10)
        assert timer.error is None, timer.error
        worst = timer.worst(baseline_end, window_end)
        during = [r for t, r in probe.results if baseline_end <= t <= window_end]
        print(f"\nunloaded max echo {unloaded * 1e3:.2f} ms; during the dead-resolver window "
              f"({window_end - baseline_end:.1f} s) max echo {worst * 1e3:.2f} ms; a blocking "
              f"getaddrinfo there took {blocking:.2f} s; /healthz: {len(during)} probes")
        assert blocking >= DNS_TIMEOUT, "the nameserver answered: the test proves nothing"
        assert worst < 100 * unloaded, (worst, unloaded)
        assert worst < DNS_TIMEOUT / 10, (worst, blocking)
        assert during and all(r == 200 for r in during), during
        assert NAME in str(rejected["problem"])  # refused, counted, the old config runs on
        assert failed["kept"] == f"{ns.host_ip}:{db.port}"  # last good address kept
        status = json.loads(admin_request(admin_port, "GET", "/status", host=ns.ip)[1])
        db_backend = next(lst for lst in status["listeners"] if lst["name"] == "db")["backends"][0]
        assert db_backend["address"] == f"{ns.host_ip}:{db.port}"
        metrics = admin_request(admin_port, "GET", "/metrics", host=ns.ip)[1]
        assert 'relay_config_reloads_total{result="failure"} 1.0' in metrics
        assert 'relay_backend_resolve_failures_total{backend="db",listener="db"} 1.0' in metrics
        relay.signal(signal.SIGTERM)
        assert relay.wait(15) == 0  # a lookup still stuck in its thread does not hold exit
    finally:
        for thread in (timer, probe):
            if thread is not None:
                thread.stop.set()
                thread.join(10)
        if lookup is not None and lookup.poll() is None:
            lookup.kill()
            lookup.wait()
        if lookup is not None and lookup.stdout is not None:
            lookup.stdout.close()
        relay.stop()
        echo.close()
        with contextlib.suppress(OSError):
            db.close()



def test_start_up_waits_for_a_dead_resolver_in_parallel_and_bounded(dead_dns, tmp_path):
    """Three names nobody answers: `relay check` (the start-up lookups of `run`) exits 2 after
    one bounded wait, not three blocking lookups in a row (at least 3 x DNS_TIMEOUT)."""
    ns, _ = dead_dns
    names = ["a.relay.test", "b.relay.test", "c.relay.test"]
    backends = "".join(f'[[listener.backend]]\nname = "{n[0]}"\naddress = "{n}:1"\n' for n in names)
    path = tmp_path / "relay.toml"
    path.write_text(f'[[listener]]\nname = "x"\nlisten = "127.0.0.1:0"\n{backends}')
    started = time.monotonic()
    result = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-m", "relay",
                             "check", "-c", str(path)], capture_output=True, text=True,
                            timeout=60, cwd=str(Path(__file__).resolve().parents[2]))
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all("no answer within" in line for line in lines), lines
    assert "Traceback" not in result.stderr
    assert elapsed < len(names) * DNS_TIMEOUT, elapsed
