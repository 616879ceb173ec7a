"""/metrics after scripted traffic: exact values, and promtool's verdict on the format."""

from __future__ import annotations

import socket
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_tool
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples, name: str, **labels: str) -> float:
    return all_samples[(name, tuple(sorted(labels.items())))]


def metric(relay: object, name: str, **labels: str) -> float | None:
    """One sample from a fresh scrape; None while the series is not there yet."""
    m = samples(relay.http("GET", "/metrics")[1])  # type: ignore[attr-defined]
    return m.get((name, tuple(sorted(labels.items()))))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _doubling(conn: socket.socket) -> None:
    """Reads until EOF, answers twice as many bytes: upstream and downstream differ."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.sendall(data * 2)
    conn.close()


def test_metrics_cost_at_most_half_a_kilobyte_per_backend_by_default(start_relay):
    """Per-backend connect-time histograms are opt-in ([runtime] backend_histograms): by
    default a backend's series take at most 512 bytes of /metrics; the listener's session
    histogram is always there."""
    relay = start_relay([{"name": "many", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                          "backends": [{"name": f"backend-{i:03d}",
                                        "address": f"127.0.0.1:{20000 + i}"}
                                       for i in range(100)]}])
    status, text = relay.http("GET", "/metrics")
    assert status == 200
    mine = [line for line in text.splitlines() if 'backend="backend-042"' in line]
    assert mine and sum(len(line) + 1 for line in mine) <= 512, "\n".join(mine)
    assert "relay_backend_connect_seconds_bucket{" not in text
    assert 'relay_session_duration_seconds_count{listener="many"}' in text


def test_counters_equal_the_scripted_traffic(start_relay):
    server = ThreadServer(_doubling)
    # a backend whose accept queue is full: connects to it time out
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(full.getsockname())
        fillers.append(s)
    try:
        none = {"kind": "none"}
        relay = start_relay([
            {"name": "ok", "listen": "127.0.0.1:0", "health": none,
             "backends": [{"name": "dbl", "address": f"127.0.0.1:{server.port}"}]},
            {"name": "refused", "listen": "127.0.0.1:0", "health": none,
             "retry": {"attempts": 2, "backoff_initial": "10ms"},
             "backends": [{"name": "gone", "address": f"127.0.0.1:{_closed_port()}"}]},
            {"name": "slow", "listen": "127.0.0.1:0", "health": none, "connect_timeout": "200ms",
             "retry": {"attempts": 1},
             "backends": [{"name": "mute", "address": f"127.0.0.1:{full.getsockname()[1]}"}]},
        ], runtime={"backend_histograms": True})
        for size in (1000, 2000, 3000):
            with socket.create_connection(("127.0.0.1", relay.port("ok"))) as conn:
                conn.sendall(b"u" * size)
                conn.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := conn.recv(65536):
                    got += chunk
                assert len(got) == 2 * size
        for name in ("refused", "slow"):
            with socket.create_connection(("127.0.0.1", relay.port(name))) as conn:
                conn.settimeout(10)
                try:
                    assert conn.recv(1) == b""
                except ConnectionResetError:
                    pass
        wait_for(lambda: metric(relay, "relay_connections_rejected_total", listener="slow",
                                reason="no_backend") == 1)  # the last session is counted
        status, text = relay.http("GET", "/metrics")
        assert status == 200
        m = samples(text)
        assert value(m, "relay_connections_accepted_total", listener="ok") == 3
        assert value(m, "relay_bytes_total", listener="ok", backend="dbl",
                     direction="upstream") == 6000
        assert value(m, "relay_bytes_total", listener="ok", backend="dbl",
                     direction="downstream") == 12000
        assert value(m, "relay_connections_active", listener="ok", backend="dbl") == 0
        assert value(m, "relay_session_duration_seconds_count", listener="ok") == 3
        assert value(m, "relay_backend_connect_seconds_count", listener="ok", backend="dbl") == 3
        assert value(m, "relay_connections_rejected_total", listener="ok",
                     reason="no_backend") == 0
        assert value(m, "relay_connections_accepted_total", listener="refused") == 1
        assert value(m, "relay_connections_rejected_total", listener="refused",
                     reason="no_backend") == 1
        assert value(m, "relay_backend_connect_errors_total", listener="refused", backend="gone",
                     reason="refused") == 2
        assert value(m, "relay_backend_connect_errors_total", listener="slow", backend="mute",
                     reason="timeout") == 1
        assert value(m, "relay_connections_rejected_total", listener="slow",
                     reason="no_backend") == 1
        assert value(m, "relay_listener_active_tier", listener="ok") == 0
        assert value(m, "relay_backend_up", listener="ok", backend="dbl") == 1
        assert value(m, "relay_backend_admin_state", listener="ok", backend="dbl",
                     state="ready") == 1
        # a backend's series that have never been non-zero are left out (half a KB each)
        assert not [k for k in m if k[0] == "relay_backend_admin_state"
                    and ("state", "maint") in k[1]]
        assert value(m, "relay_config_reloads_total", result="failure") == 0
        assert ("process_resident_memory_bytes", ()) in m
    finally:
        for s in fillers:
            s.close()
        full.close()
        server.close()


def test_live_sessions_count_in_bytes_and_active(echo, start_relay):
    relay = start_relay([{"name": "e", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                          "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}])
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"x" * 500)
        got = b""
        while len(got) < 500:
            got += conn.recv(500)
        m = samples(relay.http("GET", "/metrics")[1])  # the session is still open
        assert value(m, "relay_connections_active", listener="e", backend="echo") == 1
        assert value(m, "relay_bytes_total", listener="e", backend="echo",
                     direction="upstream") == 500
        assert value(m, "relay_bytes_total", listener="e", backend="echo",
                     direction="downstream") == 500


def test_health_metrics_follow_checks_and_transitions(start_relay):
    server = ThreadServer(lambda conn: conn.close())
    relay = start_relay([{"name": "h", "listen": "127.0.0.1:0",
                          "health": {"interval": "100ms", "timeout": "100ms", "rise": 1, "fall": 1},
                          "backends": [{"name": "b", "address": f"127.0.0.1:{server.port}"}]}])
    wait_for(lambda: (metric(relay, "relay_health_checks_total", listener="h", backend="b",
                             result="success") or 0) >= 2)
    server.close()
    relay.wait_event(lambda e: e.get("event") == "backend_down")
    wait_for(lambda: metric(relay, "relay_backend_transitions_total", listener="h",
                            backend="b", to="down") == 1)
    m = samples(relay.http("GET", "/metrics")[1])
    assert value(m, "relay_health_checks_total", listener="h", backend="b", result="success") >= 2
    assert value(m, "relay_health_checks_total", listener="h", backend="b", result="failure") >= 1
    assert value(m, "relay_backend_transitions_total", listener="h", backend="b", to="down") == 1
    assert value(m, "relay_backend_up", listener="h", backend="b") == 0
    assert value(m, "relay_listener_active_tier", listener="h") == -1
    assert value(m, "relay_failovers_total", listener="h") == 1


def test_promtool_accepts_the_metrics(echo, start_relay):
    promtool = require_tool("promtool")
    relay = start_relay([{"name": "p", "listen": "127.0.0.1:0",
                          "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}])
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"hi")
        conn.recv(2)
    text = relay.http("GET", "/metrics")[1]
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr
