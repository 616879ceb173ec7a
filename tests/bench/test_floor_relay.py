"""bench/floor_relay.py moves every byte, passes FINs on and closes on errors: the floor the
benchmark compares relay with must not be fast by being wrong.

The script runs as a real process (as the benchmark runs it) in front of small backends from
tests/support/servers.py. No timing is judged: the only waits are deadlines for a condition.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import stop_process
from tests.support.servers import EchoServer, ThreadServer, recv_all, reset, serving
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "floor_relay.py"
MB = 1 << 20


class Floor:
    """floor_relay.py in a subprocess, for the given backend ports, every listen port 0."""

    def __init__(self, *backend_ports: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *(f"0:{p}" for p in backend_ports)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.lines = []
        for line in self.proc.stdout:  # ends at "ready", or at EOF if it died
            self.lines.append(line.strip())
            if line.strip() == "ready":
                break
        assert self.lines[-1:] == ["ready"], self.lines
        self.ports = [int(line.split()[1].rsplit(":", 1)[1]) for line in self.lines[:-1]]
        assert [line.rsplit(":", 1)[1] for line in self.lines[:-1]] == [
            str(p) for p in backend_ports], self.lines
        self.base_fds = self.fds()

    @property
    def port(self) -> int:
        return self.ports[0]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def wait_fds(self, want: int, timeout: float = 10.0) -> int:
        with contextlib.suppress(AssertionError):  # the caller compares what it got
            wait_for(lambda: self.fds() == want, timeout=timeout, step=0.02)
        return self.fds()

    def stop(self) -> int:
        stop_process(self.proc)  # by its PID
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode


@contextlib.contextmanager
def floor(*backend_ports: int) -> Iterator[Floor]:
    f = Floor(*backend_ports)
    try:
        yield f
    finally:
        f.stop()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def test_echo_several_megabytes_both_ways_on_concurrent_sessions() -> None:
    """Three sessions at once, 6 MB each way, writer and reader concurrent; the echo server
    holds at most 1 MB, so sends are partial and reads stop and resume. Then a FIN each."""
    with serving(EchoServer()) as echo, floor(echo.port) as f:
        payloads = [os.urandom(6 * MB) for _ in range(3)]
        socks = [connect(f.port) for _ in payloads]
        got: list[bytes] = [b""] * len(payloads)

        def write(s: socket.socket, data: bytes) -> None:
            for i in range(0, len(data), 100_000):  # uneven chunks
                s.sendall(data[i:i + 100_000])
            s.shutdown(socket.SHUT_WR)

        def read(i: int) -> None:
            got[i] = recv_all(socks[i])

        threads = [threading.Thread(target=write, args=(s, d)) for s, d in zip(socks, payloads,
                                                                              strict=True)]
        threads += [threading.Thread(target=read, args=(i,)) for i in range(len(socks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for s in socks:
            s.close()
        assert [len(g) for g in got] == [len(p) for p in payloads]
        assert [digest(g) for g in got] == [digest(p) for p in payloads]
        assert f.wait_fds(f.base_fds) == f.base_fds  # both sockets of each session closed
        assert f.stop() == 0


def test_two_fds_per_idle_session() -> None:
    with serving(EchoServer()) as echo, floor(echo.port) as f:
        socks = []
        try:
            for _ in range(20):
                s = connect(f.port)
                socks.append(s)
                s.sendall(b"ping")
                assert s.recv(16) == b"ping"
            assert f.fds() == f.base_fds + 2 * len(socks)
        finally:
            for s in socks:
                s.close()
        assert f.wait_fds(f.base_fds) == f.base_fds


def test_client_half_close_then_the_backend_answers() -> None:
    """The client sends, then FIN; the backend answers only after that FIN, with more bytes
    than the sockets' buffers hold, while the client reads nothing until it has sent all."""
    answer = os.urandom(16 * MB)

    def handler(conn: socket.socket) -> None:
        got = recv_all(conn)  # until the FIN the floor passed on
        conn.sendall(digest(got).encode() + answer)
        conn.close()

    request = os.urandom(5 * MB)
    with serving(ThreadServer(handler)) as server, floor(server.port) as f:
        with connect(f.port) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            reply = recv_all(s)
        assert reply[:64].decode() == digest(request)
        assert len(reply) == 64 + len(answer) and digest(reply[64:]) == digest(answer)
        assert f.wait_fds(f.base_fds) == f.base_fds


def test_backend_half_close_then_the_client_goes_on_sending() -> None:
    received: queue.Queue[str] = queue.Queue()
    greeting = os.urandom(3 * MB)

    def handler(conn: socket.socket) -> None:
        conn.sendall(greeting)
        conn.shutdown(socket.SHUT_WR)
        received.put(digest(recv_all(conn)))
        conn.close()

    request = os.urandom(4 * MB)
    with serving(ThreadServer(handler)) as server, floor(server.port) as f:
        with connect(f.port) as s:
            assert digest(recv_all(s)) == digest(greeting)  # then EOF: the FIN came through
            s.sendall(request)  # the other direction still flows
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b""  # the backend closed after reading it all
        assert received.get(timeout=30) == digest(request)
        assert f.wait_fds(f.base_fds) == f.base_fds


def _eof_or_reset(conn: socket.socket) -> str:
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "eof"


def test_a_reset_on_either_side_closes_both() -> None:
    seen: queue.Queue[str] = queue.Queue()
    mode: queue.Queue[str] = queue.Queue()

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        if mode.get(timeout=30) == "server resets":
            reset(conn)
        else:
            seen.put(_eof_or_reset(conn))
            conn.close()

    with serving(ThreadServer(handler)) as server, floor(server.port) as f:
        # the client resets: the backend's side is closed
        s = connect(f.port)
        assert s.recv(5) == b"hello"
        mode.put("client resets")
        reset(s)
        assert seen.get(timeout=30) in ("eof", "reset")
        # the backend resets: the client's side is closed
        s = connect(f.port)
        assert s.recv(5) == b"hello"
        mode.put("server resets")
        assert _eof_or_reset(s) in ("eof", "reset")
        s.close()
        assert f.wait_fds(f.base_fds) == f.base_fds


def test_refused_backend_closes_the_client_and_two_listeners_work() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # closed again: nothing listens there
    with serving(EchoServer()) as echo, floor(dead, echo.port) as f:
        assert len(set(f.ports)) == 2 and 0 not in f.ports
        with connect(f.ports[0]) as s:
            assert _eof_or_reset(s) in ("eof", "reset")
        with connect(f.ports[1]) as s:
            s.sendall(b"still serving")
            assert s.recv(64) == b"still serving"
        assert f.wait_fds(f.base_fds) == f.base_fds
        assert f.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly_with_sessions_open(signum: int) -> None:
    with serving(EchoServer()) as echo, floor(echo.port) as f, connect(f.port) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        f.proc.send_signal(signum)
        assert f.proc.wait(10) == 0
        assert _eof_or_reset(s) in ("eof", "reset")


def test_partial_sends_keep_the_rest_in_process() -> None:
    """The floor's own functions on socket pairs whose sending side holds a few KB, and a
    reader that takes 1,000 bytes a turn: nearly every send, and every flush of the rest, is
    partial. Every epoll bit is delivered every turn (spurious edges must be harmless too)."""
    from bench import floor_relay as fr

    ev = fr.IN | fr.OUT
    data = os.urandom(2 * MB)
    client, floor_c = socket.socketpair()
    floor_s, server = socket.socketpair()
    with client, floor_c, floor_s, server:
        for s in (floor_c, floor_s, client, server):
            s.setblocking(False)
        floor_s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c, s = fr.End(floor_c, True), fr.End(floor_s, True)  # type: ignore[arg-type]
        c.peer, s.peer = s, c
        fr.ends.update({c.fd: c, s.fd: s})
        try:
            sent, got, flushes = 0, bytearray(), 0
            while True:
                if sent < len(data):
                    with contextlib.suppress(BlockingIOError):
                        sent += client.send(data[sent:sent + 100_000])
                    if sent == len(data):
                        client.shutdown(socket.SHUT_WR)
                if c.fd in fr.ends:
                    fr.on_event(c, ev)
                if s.fd in fr.ends:
                    flushes += bool(s.out)
                    fr.on_event(s, ev)
                try:
                    chunk = server.recv(1000)
                except BlockingIOError:
                    continue
                if not chunk:
                    break  # the FIN, after every byte
                got += chunk
            assert len(got) == len(data) and digest(got) == digest(data)
            assert flushes > 100  # the rest was flushed in many partial steps
            server.shutdown(socket.SHUT_WR)  # the other direction ends: the floor closes both
            fr.on_event(s, ev)
            assert fr.ends == {}
            assert floor_c.fileno() == -1 and floor_s.fileno() == -1
        finally:
            fr.ends.clear()
