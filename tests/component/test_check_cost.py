"""What an active check leaves behind: nothing (issue 17, cost per backend)."""

from __future__ import annotations

import socket

from tests.component.test_edge import metric
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for

TIME_WAIT = "06"


def _time_wait_towards(port: int) -> int:
    """Sockets in TIME_WAIT whose remote port is `port` (IPv4, this network namespace)."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == TIME_WAIT and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _close_at_eof(conn: socket.socket) -> None:
    while conn.recv(4096):
        pass
    conn.close()


def test_tcp_checks_close_with_a_reset_and_leave_no_time_wait_socket(start_relay):
    """relay closes a check's connection first: with a FIN each check would leave a
    TIME_WAIT socket for 60 s (120,000 of them at 4,000 backends checked every 2 s)."""
    server = ThreadServer(_close_at_eof)
    try:
        relay = start_relay([{"name": "c", "listen": "127.0.0.1:0",
                              "health": {"kind": "tcp", "interval": "100ms", "rise": 1},
                              "backends": [{"name": "b", "address": f"127.0.0.1:{server.port}"}]}])
        wait_for(lambda: metric(relay, "relay_health_checks_total", 0.0, listener="c",
                                backend="b", result="success") >= 10)
        wait_for(lambda: server.accepted >= 10)
        assert _time_wait_towards(server.port) == 0
        assert metric(relay, "relay_backend_up", listener="c", backend="b") == 1
    finally:
        server.close()
