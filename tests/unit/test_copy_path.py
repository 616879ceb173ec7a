"""The copy path (Direction._pump_copy) on real sockets, driven by hand: many directions share
one BufferPool's scratch buffer and its cached heads (BufferPool.head); their readers are
slow, so writes come out partial and sessions keep the scratch (BufferPool.take). Every byte
must arrive in order, none from another direction's stream or from an earlier read; and a
write that fails maps as send's did: EAGAIN waits for EPOLLOUT, any other error is DST_RESET."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

import pytest

from relay.net.buffers import HEADS, BufferPool
from relay.net.session import DST_RESET, IDLE, Direction, End, SessionHost
from relay.net.splice import PipePool

SMALL_BUFFER = 4096  # SO_SNDBUF/SO_RCVBUF of the sockets the directions write to


def _host(buffers: BufferPool) -> SessionHost:
    host = SessionHost()  # (a compiled class: set up, not subclassed, from interpreted code)
    host.buffers = buffers
    host.pipes = PipePool(max_total=0)
    host.use_splice = False
    return host


class Lane:
    """One direction with its sockets: the test writes into `feed` (the direction's src peer)
    and reads what it delivered from `out` (its dst peer)."""

    def __init__(self, host: SessionHost, tcp: bool = False) -> None:
        self.feed, src = socket.socketpair()
        dst, self.out = _tcp_pair() if tcp else socket.socketpair()
        dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        self.out.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        for sock in (self.feed, src, dst, self.out):
            sock.setblocking(False)
        self.socks = (self.feed, src, dst, self.out)
        self.direction = Direction(End(src, src.fileno()), End(dst, dst.fileno()), host, False)
        self.sent = bytearray()  # what the feed took
        self.got = bytearray()  # what came out

    def feed_some(self, data: bytes) -> None:
        try:
            self.sent += data[:self.feed.send(data)]
        except BlockingIOError:
            pass

    def pump(self) -> int:
        """As after an edge on both sockets: readable and writable until the kernel says no."""
        direction = self.direction
        direction.src.readable = direction.dst.writable = True
        return direction.pump()

    def read_some(self, limit: int) -> None:
        try:
            self.got += self.out.recv(limit)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.direction.release()
        for sock in self.socks:
            sock.close()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


@pytest.fixture
def lanes() -> Iterator[list[Lane]]:
    made: list[Lane] = []
    yield made
    for lane in made:
        lane.close()


# around the cached heads' bound (HEADS), one-byte and full-buffer reads, and a few in between
SIZES = [1, 2, 7, HEADS - 1, HEADS, HEADS + 1, 4095, 4096, 65535, 65536]


def _message(rng: random.Random, lane: int, seq: int) -> bytes:
    """Distinct bytes per lane and message, so a byte out of place shows."""
    size = rng.choice(SIZES) if rng.random() < 0.5 else rng.randint(1, 3000)
    head = struct.pack(">HI", lane, seq)
    return (head * (size // len(head) + 1))[:size]


def test_interleaved_directions_through_one_scratch_deliver_their_own_bytes(lanes):
    rng = random.Random(20261)
    pool = BufferPool()
    host = _host(pool)
    lanes.extend(Lane(host) for _ in range(12))
    kept = 0  # pumps after which a direction held the scratch (a partial or refused write)
    for step in range(6000):
        index = rng.randrange(len(lanes))
        lane = lanes[index]
        lane.feed_some(_message(rng, index, step))
        assert lane.pump() != DST_RESET
        kept += lane.direction.buf is not None
        if rng.random() < 0.3:  # slow readers: often nothing read for a while
            lanes[rng.randrange(len(lanes))].read_some(rng.choice([1, 100, HEADS, 65536]))
    for _ in range(100_000):  # drain: everything fed must come out
        if all(len(lane.got) == len(lane.sent) for lane in lanes):
            break
        for lane in lanes:
            lane.pump()
            lane.read_some(65536)
    assert kept > 100  # the test went where it means to: sessions kept the scratch often
    for index, lane in enumerate(lanes):
        assert len(lane.got) == len(lane.sent), index
        assert lane.got == lane.sent, index  # no byte of another lane's or of a stale read
        assert lane.direction.bytes == len(lane.sent)
    assert pool.in_use == 0


def test_refused_write_keeps_the_bytes_and_a_later_edge_sends_them(lanes):
    pool = BufferPool()
    lane = Lane(_host(pool))
    lanes.append(lane)
    for _ in range(1000):  # fill dst's path until a write is refused outright
        lane.feed_some(b"f" * 65536)
        assert lane.pump() == IDLE
        if lane.direction.buf is not None and not lane.direction.dst.writable:
            break
    assert pool.in_use == 1 and not lane.direction.dst.writable
    lane.feed_some(b"tail")
    for _ in range(10_000):
        lane.read_some(65536)
        lane.pump()
        if len(lane.got) == len(lane.sent):
            break
    assert lane.got == lane.sent and pool.in_use == 0


@pytest.mark.parametrize("kept", [False, True], ids=["fresh_read", "kept_bytes"])
@pytest.mark.parametrize("how", ["epipe", "econnreset"])
def test_a_failed_write_is_dst_reset(lanes, kept, how):
    # a Unix socket whose peer is gone: EPIPE; a TCP peer that reset: ECONNRESET
    pool = BufferPool()
    lane = Lane(_host(pool), tcp=how == "econnreset")
    lanes.append(lane)
    if kept:  # bytes waiting in a kept buffer when the write fails
        for _ in range(1000):
            lane.feed_some(b"k" * 65536)
            assert lane.pump() == IDLE
            if lane.direction.buf is not None:
                break
        assert pool.in_use == 1
    if how == "epipe":
        lane.out.close()
    else:
        lane.out.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        lane.out.close()
    lane.feed_some(b"after")
    assert lane.pump() == DST_RESET
    lane.direction.release()
    assert pool.in_use == 0
