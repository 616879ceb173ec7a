"""The data path through a real relay process: integrity, half-close, resets, backpressure, idle."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import random
import socket
import struct
import threading
import time

import pytest

from tests.conftest import one_listener
from tests.support.relayproc import toml_config
from tests.support.servers import ThreadServer, recv_all, reset
from tests.support.wait import wait_for

MiB = 1 << 20


def _exchange(port: int, payload: bytes) -> bytes:
    """Send payload (then EOF) while reading everything back; returns what came back."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(recv_all(conn)))
        reader.start()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        reader.join(120)
        assert not reader.is_alive()
    return got[0]


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_64_mib_each_way_arrive_byte_exact(echo, start_relay, splice):
    relay = start_relay(one_listener(echo.port), runtime={"splice": splice})
    payload = os.urandom(64 * MiB)
    back = _exchange(relay.port(), payload)
    assert len(back) == len(payload)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest()
    started = relay.wait_event(lambda e: e.get("event") == "relay_started")
    assert started["splice"] == ("on" if splice == "auto" else "off")


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_distinct_streams_each_way_are_not_mixed(start_relay, splice):
    """Upstream and downstream carry different bytes at the same time; each arrives whole."""
    down_payload = os.urandom(8 * MiB)
    seen_up: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        sender = threading.Thread(target=conn.sendall, args=(down_payload,))
        sender.start()
        seen_up.append(recv_all(conn))
        sender.join()
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port), runtime={"splice": splice})
        up_payload = os.urandom(8 * MiB)
        back = _exchange(relay.port(), up_payload)
        assert hashlib.sha256(back).digest() == hashlib.sha256(down_payload).digest()
        assert hashlib.sha256(seen_up[0]).digest() == hashlib.sha256(up_payload).digest()
    finally:
        server.close()


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_half_close_answer_after_client_eof_arrives_whole(start_relay, splice):
    answer = os.urandom(3 * MiB)

    def handler(conn: socket.socket) -> None:
        request = recv_all(conn)  # only returns at the client's EOF
        conn.sendall(hashlib.sha256(request).digest() + answer)
        conn.close()

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port), runtime={"splice": splice})
        request = os.urandom(MiB)
        with socket.create_connection(("127.0.0.1", relay.port())) as conn:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            reply = recv_all(conn)
        assert reply[:32] == hashlib.sha256(request).digest()
        assert reply[32:] == answer
    finally:
        server.close()


def test_backend_eof_first_client_can_still_send(start_relay):
    """The backend finishes its direction first; the client's later bytes still reach it."""
    got: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"banner\n")
        conn.shutdown(socket.SHUT_WR)
        got.append(recv_all(conn))
        conn.close()

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port))
        with socket.create_connection(("127.0.0.1", relay.port())) as conn:
            assert recv_all(conn) == b"banner\n"
            conn.sendall(b"late words")
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(10) == b""  # the session ends once both directions ended
        wait_for(lambda: got, timeout=10, step=0.01)
        assert got == [b"late words"]
    finally:
        server.close()


def test_backend_reset_reaches_client_as_reset(start_relay):
    def handler(conn: socket.socket) -> None:
        conn.recv(100)
        reset(conn)

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port))
        with socket.create_connection(("127.0.0.1", relay.port())) as conn:
            conn.sendall(b"hello")
            conn.settimeout(10)
            with pytest.raises(ConnectionResetError):
                while conn.recv(100):
                    pass
        relay.wait_event(lambda e: e.get("event") == "relay_started")
    finally:
        server.close()


def test_client_reset_reaches_backend_as_reset(start_relay):
    outcome: list[str] = []
    arrived = threading.Event()

    def handler(conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            while conn.recv(100):
                arrived.set()
            outcome.append("eof")
        except ConnectionResetError:
            outcome.append("reset")
        except OSError as exc:
            outcome.append(repr(exc))

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port))
        conn = socket.create_connection(("127.0.0.1", relay.port()))
        conn.sendall(b"hello")
        assert arrived.wait(10)  # relayed: the session is established end to end
        reset(conn)
        wait_for(lambda: outcome, timeout=10, step=0.01)
        assert outcome == ["reset"]
    finally:
        server.close()


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_client_that_never_reads_keeps_relay_memory_bounded(start_relay, splice):
    """The backend floods, the client never reads: relay must stop reading, not buffer."""
    sent = [0]
    stop = threading.Event()
    chunk = b"x" * (256 * 1024)

    def handler(conn: socket.socket) -> None:
        conn.settimeout(0.5)
        while not stop.is_set() and sent[0] < 2048 * MiB:
            try:
                sent[0] += conn.send(chunk)
            except TimeoutError:
                continue

    server = ThreadServer(handler)
    try:
        relay = start_relay(one_listener(server.port), runtime={"splice": splice})
        rss_before = relay.rss_kib()
        conn = socket.create_connection(("127.0.0.1", relay.port()))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        try:
            conn.sendall(b"go")
            # wait until the flood stalls: the sender stops making progress
            last, deadline = -1, time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if sent[0] == last:
                    break
                last = sent[0]
            rss_after = relay.rss_kib()
        finally:
            stop.set()
            conn.close()
        assert sent[0] < 64 * MiB, "relay kept reading although the client did not"
        assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
    finally:
        stop.set()
        server.close()


def test_idle_session_is_closed_after_idle_timeout(echo, start_relay):
    """In a relay process, with its access line. The timing (never before, at most a slot
    late; activity either way keeps a session): tests/unit/test_idle.py on a fake clock."""
    relay = start_relay(one_listener(echo.port, idle_timeout="300ms", access_log=True))
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.settimeout(10)
        t0 = time.monotonic()
        assert conn.recv(10) == b""  # relay closed it
        waited = time.monotonic() - t0
    assert waited >= 0.25  # not before the timeout
    access = relay.wait_event(lambda e: e.get("event") == "access")
    assert access["cause"] == "idle_timeout"
    assert access["bytes_up"] == 4 and access["bytes_down"] == 4


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_closed_sessions_leave_nothing_for_the_garbage_collector(echo, splice):
    """Sessions are freed by reference counting alone: no cycle between a session's parts
    outlives it, so the collector never has to run for them (it is tuned to run rarely)."""
    from relay.core.dial import DialPlan
    from relay.net.connect import PendingConnect
    from relay.net.dialer import Dial
    from relay.net.session import Direction, End, Session
    from tests.support.inproc import InProcessRelay

    def alive() -> int:
        kinds = (Session, Direction, End, Dial, DialPlan, PendingConnect)
        return sum(1 for o in gc.get_objects() if type(o) in kinds)

    relay = InProcessRelay(toml_config(one_listener(echo.port), runtime={"splice": splice}))
    gc.collect()
    gc.disable()
    try:
        port = relay.port("test")
        for i in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                payload = os.urandom(100 if i % 2 else 300_000)  # small (copy) and bulk (splice)
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)  # half-close: both directions finish in turn
                got = b""
                while chunk := conn.recv(65536):
                    got += chunk
                assert got == payload
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: relay.call(lambda: len(relay.server.sessions)) == 0, timeout=10,
                 step=0.01)
        assert relay.call(alive) == 0
    finally:
        gc.enable()
        relay.stop()


# around the copy path's cached scratch heads (relay/net/buffers.py HEADS = 2048), one byte and a
# whole scratch buffer (64 KiB)
_SIZES = [1, 2, 2047, 2048, 2049, 4096, 65535, 65536, 65537]


def _client_run(port: int, seed: int, throttled: bool, results: dict[int, str]) -> None:
    """Distinct random-length messages to the echo backend through relay; what comes back
    must be the same stream. A throttled client reads in small bites with pauses, on a small
    receive buffer, so relay's writes to it come out partial."""
    rng = random.Random(seed)
    messages = [rng.choice(_SIZES) if rng.random() < 0.4 else rng.randint(1, 5000)
                for _ in range(rng.randint(40, 120))]
    if throttled:  # first more than the kernel buffers on the way hold (loopback: MiBs)
        messages = [65536] * 96 + messages
    payload = b"".join(rng.randbytes(size) for size in messages)
    conn = socket.socket()
    if throttled:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(60)
    got = bytearray()
    try:
        conn.connect(("127.0.0.1", port))

        def write() -> None:
            offset = 0
            for size in messages:  # one send per message: relay's reads vary in length
                conn.sendall(payload[offset:offset + size])
                offset += size
            conn.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        if throttled:  # nothing read for a while: the buffers on the way back fill up
            writer.join(1.0)
        while True:
            data = conn.recv(rng.choice([1, 700, 2047, 2049]) if throttled else 1 << 20)
            if not data:
                break
            got += data
            if throttled and rng.random() < 0.05:
                time.sleep(0.002)
        writer.join(60)
        if len(got) != len(payload):
            results[seed] = f"{len(got)} bytes back of {len(payload)}"
        elif hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
            first = next(i for i, (a, b) in enumerate(zip(got, payload, strict=True)) if a != b)
            results[seed] = f"wrong bytes from offset {first} of {len(payload)}"
        else:
            results[seed] = "ok"
    except OSError as exc:
        results[seed] = repr(exc)
    finally:
        conn.close()


def _resetter_run(port: int, seed: int) -> None:
    """Sends, never reads, and resets mid-stream: its session ends with bytes still held."""
    rng = random.Random(seed)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with contextlib.suppress(OSError):
            for _ in range(rng.randint(5, 40)):
                conn.sendall(rng.randbytes(rng.choice(_SIZES)))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_concurrent_sessions_of_mixed_message_sizes_get_their_own_bytes(echo, start_relay,
                                                                         splice):
    """Many sessions at once share the copy path's one scratch buffer (and its cached views):
    a slow reader makes its session keep that buffer, others reset mid-stream; each client
    must get back exactly its own stream."""
    relay = start_relay(one_listener(echo.port), runtime={"splice": splice})
    port = relay.port()
    results: dict[int, str] = {}
    threads = [threading.Thread(target=_client_run, args=(port, seed, seed % 3 == 0, results),
                                daemon=True) for seed in range(24)]
    threads += [threading.Thread(target=_resetter_run, args=(port, 1000 + seed), daemon=True)
                for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {seed: "ok" for seed in range(24)}
    with socket.create_connection(("127.0.0.1", port)) as conn:  # relay still serves
        conn.sendall(b"after")
        assert conn.recv(5) == b"after"
