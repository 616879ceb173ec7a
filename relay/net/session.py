"""One client session: once the dialer connected its backend, bytes both ways until both ends finish.

The data path is edge-triggered: each socket is registered once (IN|OUT|RDHUP|ET)
and never modified; readiness is remembered in ``End.readable``/``End.writable``
and cleared only when the kernel answers EAGAIN. So no epoll_ctl happens while
bytes flow, and backpressure is simply "don't read from a side whose bytes have
nowhere to go": the kernel's socket buffers fill and TCP's window closes.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Final, Protocol

from mypy_extensions import mypyc_attr

from relay.core.proxy_header import encode_v1, encode_v2
from relay.net import sysio
from relay.net.connect import SESSION_MASK as _MASK
from relay.net.connect import reset_on_close
from relay.net.reactor import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, Handler
from relay.net.splice import SPLICE_FLAGS, Pipe
from relay.net.sysio import Sock

if TYPE_CHECKING:
    from relay.config.model import ListenerConfig
    from relay.net.backends import Backend, BackendGroup
    from relay.net.buffers import BufferPool
    from relay.net.idle import IdleSlots
    from relay.net.reactor import Reactor
    from relay.net.resolve import SockAddr
    from relay.net.splice import PipePool

_READABLE: Final = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR
_WRITABLE: Final = EPOLLOUT | EPOLLHUP | EPOLLERR
_HANGUP: Final = EPOLLRDHUP | EPOLLHUP | EPOLLERR
_BROKEN: Final = EPOLLERR | EPOLLHUP  # events the short paths of Session.on_event leave to the full one
_SPLICE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
_SHUT_WR: Final = socket.SHUT_WR

# Direction.pump results: nothing more to do now, more to do (budget spent), a socket reset,
# the direction just finished (FIN passed on)
IDLE: Final = 0
MORE: Final = 1
SRC_RESET: Final = 2
DST_RESET: Final = 3
DONE: Final = 4
BUDGET: Final = 16  # syscall rounds per direction per wake-up, so one bulk flow cannot starve the rest
SMALL_READ: Final = 16384  # a splice that brings less than this ends bulk mode

CONNECTING: Final = 0
RELAYING: Final = 1
CLOSED: Final = 2

splice: Final = getattr(os, "splice", None)
# recv and send on the sockets' fds (relay/net/sysio.py: C where built, the GIL kept across
# the call; else Python's os module), at fewer instructions than the socket objects' methods
_recv_into: Final = sysio.recv_into
_send: Final = sysio.send
# a socket's SO_ERROR, shutdown and close by function (a method called by name costs compiled
# code a type lookup per call)
_so_error: Final = sysio.so_error
_shutdown: Final = sysio.shutdown
_close: Final = sysio.close


@mypyc_attr(allow_interpreted_subclasses=True)  # the dialer's tests stand in for a listener
class SessionHost(Handler):
    """What a session and its dial (relay/net/dialer.py) need of the listener that accepted
    its client (relay.net.listener.Listener, the one subclass outside tests): its loop, its
    settings, its backend group, the pipes and buffers its directions borrow, the idle slots,
    how a backend connect starts (relay.net.connect.start_connect; a test decides outcomes
    there), where a shortage of sockets and the session's close are reported. Written here so
    that this module depends on neither the listener nor the dialer; a class, not a protocol,
    so that compiled code reads and calls these natively (through a protocol each read was a
    dictionary lookup and each call a method lookup by name: bench/NOTES.md)."""

    reactor: Reactor
    config: ListenerConfig
    group: BackendGroup
    pipes: PipePool
    buffers: BufferPool
    idle: IdleSlots
    use_splice: bool

    def session_closed(self, session: Session, was_relaying: bool) -> None:
        raise NotImplementedError

    def start_connect(self, target: SockAddr) -> tuple[Sock, int]:
        raise NotImplementedError

    def out_of_fds(self, exc: OSError) -> None:
        raise NotImplementedError


class Connecting(Protocol):
    """The dial that is connecting a session (relay.net.dialer.Dial is one): a session that
    closes first cancels it."""

    def cancel(self, reset: bool) -> None: ...


class End:
    """One socket of a session and what the kernel last told us about it."""

    __slots__ = ("fd", "hup", "readable", "sock", "writable")

    def __init__(self, sock: Sock, fd: int) -> None:
        self.sock = sock  # see sysio.Sock: made by sysio.accept (a client's) or connect
        self.fd = fd  # sock.fileno(), which the caller knows already
        self.readable = False
        self.writable = False
        self.hup = False  # the peer hung up (or errored): read until EOF, take no shortcut

    def note(self, events: int) -> None:
        """Remember what an epoll event says about this socket."""
        if events & _READABLE:
            self.readable = True
            if events & _HANGUP:
                self.hup = True
        if events & _WRITABLE:
            self.writable = True


class Direction:
    """Bytes from src to dst, through a pipe (splice) or a buffer (copy), never both at once."""

    __slots__ = ("buf", "buffers", "bulk", "bytes", "dst", "end", "eof", "full", "other", "pending",
                 "pipe", "pipes", "shut", "src", "start", "use_splice")

    def __init__(self, src: End, dst: End, listener: SessionHost, use_splice: bool) -> None:
        self.src = src
        self.dst = dst
        # the listener's pipes and buffers, which this direction borrows (held here: a read of
        # the listener's through its protocol costs a dictionary lookup per message, compiled)
        self.pipes = listener.pipes
        self.buffers = listener.buffers
        self.use_splice = use_splice and splice is not None
        self.bulk = False  # splice only while a flow is bulk: small messages cost less copied
        self.other: Direction | None = None  # the opposite direction of the same session
        self.pipe: Pipe | None = None
        self.pending = 0  # bytes in the pipe
        self.full = False  # the pipe refused more (it counts slots, not bytes)
        self.buf: memoryview | None = None  # held only while dst has not taken every byte
        self.start = 0  # buf[start:end] is waiting for dst
        self.end = 0
        self.eof = False  # src has sent FIN
        self.shut = False  # FIN passed on to dst: this direction is finished
        self.bytes = 0  # delivered to dst

    def waiting(self) -> bool:
        """Bytes read and not yet written (in the pipe or the buffer)."""
        return self.pending > 0 or self.end > 0

    def received(self) -> bool:
        """Any byte read from src so far (delivered or still waiting)."""
        return self.bytes > 0 or self.waiting()

    def pump(self) -> int:
        # (Session.on_event has this test inline for its reading direction)
        if (self.bulk or self.pending) and self.use_splice and not self.end:
            return self._pump_splice()
        return self._pump_copy()

    def _pump_splice(self) -> int:
        src, dst = self.src, self.dst
        for _round in range(BUDGET):
            progressed = False
            pipe = self.pipe
            if pipe is not None and self.pending and dst.writable:
                try:
                    n = splice(pipe.rfd, dst.fd, self.pending, flags=SPLICE_FLAGS)  # type: ignore[misc]
                except BlockingIOError:
                    dst.writable = False
                except OSError:
                    return DST_RESET
                else:
                    self.pending -= n
                    self.bytes += n
                    self.full = False
                    progressed = True
                    if not self.pending:
                        self.pipes.release(pipe)
                        self.pipe = pipe = None
                        if not self.bulk:
                            return MORE  # the flow went quiet: the copy path takes it
            if not self.eof and src.readable and not self.full:
                if pipe is not None and self.pending >= pipe.capacity:
                    self.full = True  # a zero-length splice would read as EOF
                    continue
                if pipe is None:
                    pipe = self.pipe = self.pipes.acquire()
                    if pipe is None:  # no pipe to be had: this chunk goes through a buffer
                        return self._pump_copy()
                try:
                    n = splice(src.fd, pipe.wfd, pipe.capacity - self.pending,  # type: ignore[misc]
                               flags=SPLICE_FLAGS)
                except BlockingIOError:
                    # EAGAIN: the socket is empty, or the pipe ran out of slots.
                    if self.pending:
                        self.full = True
                    else:
                        src.readable = False
                        self.pipes.release(pipe)
                        self.pipe = None
                except OSError as exc:
                    if exc.errno in _SPLICE_UNSUPPORTED and not self.pending:
                        self.use_splice = False  # e.g. a socket type splice cannot read
                        self.pipes.release(pipe)
                        self.pipe = None
                        return self._pump_copy()
                    return SRC_RESET
                else:
                    if n:
                        self.pending += n
                        progressed = True
                        if n < SMALL_READ:
                            self.bulk = False  # after this pipe drains, copy again
                    else:
                        self.eof = True
                        if not self.pending:
                            self.pipes.release(pipe)
                            self.pipe = None
            if self.eof and not self.pending:
                return self._finish()
            if not progressed:
                return IDLE
        return MORE

    def _pump_copy(self) -> int:
        src, dst = self.src, self.dst
        for _round in range(BUDGET):  # (a named int: "_" is boxed per round, compiled)
            if self.end:  # bytes read earlier that dst did not take yet
                if not dst.writable:
                    return IDLE
                buf = self.buf
                assert buf is not None
                try:
                    n = _send(dst.fd, buf[self.start:self.end])
                except BlockingIOError:
                    dst.writable = False
                    return IDLE
                except OSError:
                    return DST_RESET
                self.bytes += n
                self.start += n
                if self.start < self.end:
                    continue  # the next send takes more, or says EAGAIN
                self.start = self.end = 0
                self.buf = None
                self.buffers.release(buf)
                if self.bulk:
                    return MORE  # bulk now: back to the splice path
            if self.eof:
                return self._finish()
            if not src.readable:
                return IDLE
            buffers = self.buffers
            scratch = buffers.scratch
            try:
                n = _recv_into(src.fd, scratch)
            except BlockingIOError:
                src.readable = False
                return IDLE
            except OSError:
                return SRC_RESET
            if not n:
                self.eof = True
                return self._finish()
            if n == buffers.size:
                if self.use_splice:
                    self.bulk = True  # a full buffer: bulk, the next bytes splice
            elif not src.hup:
                # ET: a short read emptied the socket; new bytes bring a new edge.
                # Not after a hang-up, whose edge is gone: read on to the EOF then.
                src.readable = False
            sent = 0
            if dst.writable:
                try:
                    sent = _send(dst.fd, buffers.head(n))
                except BlockingIOError:
                    dst.writable = False
                except OSError:
                    return DST_RESET
                self.bytes += sent
            if sent < n:  # keep the rest where it is: the scratch buffer becomes ours
                self.buf = buffers.take()
                self.start, self.end = sent, n
            elif self.bulk:
                return MORE
        return MORE

    def _finish(self) -> int:
        if self.shut:
            return IDLE
        self.shut = True
        if self.other is None or not self.other.shut:  # else the session closes both now
            try:
                dst = self.dst
                _shutdown(dst.sock, dst.fd, _SHUT_WR)
            except OSError:
                pass  # dst already gone; its own events will tell
        return DONE

    def release(self) -> None:
        """Give back pipe and buffer; a pipe that still holds bytes is closed, not reused."""
        if self.pipe is not None:
            if self.pending:
                self.pipes.discard(self.pipe)
            else:
                self.pipes.release(self.pipe)
            self.pipe = None
            self.pending = 0
        if self.buf is not None:
            self.buffers.release(self.buf)
            self.buf = None
            self.start = self.end = 0


class Origin:
    """Where a client really comes from, when the listener's edge looked: its address (or the
    one a trusted PROXY header gave), the address it connected to as that header says, and
    whether it holds a place in the per-source limit."""

    __slots__ = ("counted", "destination", "source")

    def __init__(self, source: tuple[str, int], destination: tuple[str, int] | None,
                 counted: bool) -> None:
        self.source = source
        self.destination = destination
        self.counted = counted


@mypyc_attr(allow_interpreted_subclasses=True)  # the dialer's tests stand in for a session
class Dialed(Handler):
    """What a dial (relay/net/dialer.py) needs of the session it connects: Session is the one
    outside tests. A base class, not a protocol, so that the compiled dialer reads and calls
    these natively (bench/NOTES.md); once connected, the session handles its backend
    socket's events (a Handler)."""

    __slots__ = ("backend", "config", "dial", "hedged", "opened")

    config: ListenerConfig
    opened: float
    backend: Backend | None  # the one connected, or the last one tried
    dial: Connecting | None  # while connecting
    hedged: bool  # its dial raced a second connect (the access log says so)

    @property
    def client_addr(self) -> str:
        """The client as logs name it, host:port."""
        raise NotImplementedError

    def connected(self, backend: Backend, server_end: End, seconds: float) -> None:
        raise NotImplementedError

    def close(self, cause: str, reset: bool = False, reset_client: bool = False,
              reset_backend: bool = False) -> None:
        raise NotImplementedError


class Session(Dialed):
    """A client and, once the dialer (relay/net/dialer.py) connected it, its backend: bytes
    both ways until both ends finish, then close."""

    __slots__ = ("__weakref__", "cause", "client", "down", "idle_slot", "last_active", "listener",
                 "origin", "peer", "reactor", "scheduled", "server_end", "state", "up")

    def __init__(self, listener: SessionHost, client: Sock, fd: int,
                 peer: tuple[str, int], origin: Origin | None = None) -> None:
        self.listener = listener
        self.origin = origin
        self.config = listener.config  # a reload changes the listener's, not this session's
        self.reactor = listener.reactor
        self.client = End(client, fd)
        self.peer = peer  # the client's (host, port): formatted only when a log needs it
        self.server_end: End | None = None
        self.backend = None
        self.dial = None
        self.hedged = False
        self.state = CONNECTING
        self.up: Direction | None = None  # client -> backend
        self.down: Direction | None = None  # backend -> client
        self.idle_slot: set[Session] | None = None  # see relay/net/idle.py
        self.opened = self.last_active = self.reactor.now
        self.scheduled = False
        self.cause = ""
        self.reactor.register(self.client.fd, _MASK, self)

    @property
    def client_addr(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}"

    def connected(self, backend: Backend, server_end: End, seconds: float) -> None:
        """The dialer connected `backend` in `seconds`; `server_end` is registered with this
        session as its handler: relay from now on."""
        self.backend = backend
        self.server_end = server_end
        if self.config.proxy_protocol != "off" and not self._send_proxy_header(server_end):
            return
        self.state = RELAYING
        self.listener.group.connected(self, backend, seconds)
        use_splice = self.listener.use_splice
        self.up = Direction(self.client, server_end, self.listener, use_splice)
        self.down = Direction(server_end, self.client, self.listener, use_splice)
        self.up.other, self.down.other = self.down, self.up
        self.last_active = self.reactor.now
        idle = self.config.idle_timeout
        if idle is not None:
            self.listener.idle.join(self, self.last_active + idle, idle)
        self._pump(1, server_end.readable)  # the backend has rarely said anything yet

    def _send_proxy_header(self, server_end: End) -> bool:
        """The PROXY header goes first, before any byte of the client's; False if the backend
        would not take it (the session is closed)."""
        origin = self.origin
        header = b""
        try:
            if origin is not None:
                source, destination = origin.source, origin.destination
            else:
                source, destination = self.peer, None  # (as accept gave it: no getpeername)
            if destination is None:
                destination = self.client.sock.getsockname()[:2]
            if self.config.proxy_protocol == "v1":
                header = encode_v1(source, destination)
            else:
                header = encode_v2(source, destination)
            # a fresh connection's send buffer is empty: a header of at most 108 bytes fits
            sent = server_end.sock.send(header)
        except (OSError, ValueError):  # (ValueError: an address the encoders cannot write)
            sent = -1
        if sent != len(header) or not header:
            self.close("backend_reset", reset=True)
            return False
        return True

    # -- events -----------------------------------------------------------

    def on_event(self, fd: int, events: int) -> None:
        state = self.state
        if state == RELAYING and not events & _BROKEN:
            # the common case, kept short: bytes (or a FIN) to read from this socket, room to
            # write to it
            if fd == self.client.fd:
                reading, writing = self.up, self.down
            else:
                reading, writing = self.down, self.up
            assert reading is not None and writing is not None
            if events & EPOLLOUT:
                reading.src.writable = True
                if writing.pending or writing.end:  # only a direction with bytes for it
                    result = writing.pump()
                    if result and self._outcome(writing, result):
                        return
            if events & _READABLE:
                src = reading.src
                src.readable = True
                if events & EPOLLRDHUP:
                    src.hup = True  # the FIN's edge is the last: read on to the EOF
                # (Direction.pump, one call less for small messages)
                if (reading.bulk or reading.pending) and reading.use_splice and not reading.end:
                    result = reading._pump_splice()
                else:
                    result = reading._pump_copy()
                if result and self._outcome(reading, result):
                    return
            self.last_active = self.reactor.now
            return
        client = self.client
        if state != RELAYING:
            # connecting: only the client is ours (the dialer watches the backend's connect);
            # what it did (spoke, hung up) is remembered for when the relaying starts
            if state == CONNECTING:
                if events & EPOLLERR and _so_error(client.sock, fd):
                    self.close("client_reset")
                else:
                    client.note(events)
            return
        end = client if fd == client.fd else self.server_end
        if end is None:
            return
        if events & EPOLLERR and _so_error(end.sock, fd):
            self._reset(from_client=end is client)
            return
        end.note(events)
        # only the directions this event can move: reading from `end`, or writing to it
        # (edge-triggered epoll reports "writable" with every edge: it only matters to a
        # direction that has bytes waiting for this socket)
        up, down = self.up, self.down
        assert up is not None and down is not None
        if end is client:
            self._pump(events & _READABLE, events & _WRITABLE and down.waiting())
        else:
            self._pump(events & _WRITABLE and up.waiting(), events & _READABLE)

    def on_crash(self, exc: BaseException) -> None:
        self.close("internal_error", reset=True)

    def _resume(self) -> None:
        self.scheduled = False
        if self.state == RELAYING:
            self._pump()

    def _pump(self, pump_up: int = 1, pump_down: int = 1) -> None:
        up, down = self.up, self.down
        assert up is not None and down is not None
        before = up.bytes + down.bytes
        if pump_up:
            result = up.pump()
            if result and self._outcome(up, result):
                return
        if pump_down:
            result = down.pump()
            if result and self._outcome(down, result):
                return
        if up.bytes + down.bytes != before:
            self.last_active = self.reactor.now

    def _outcome(self, direction: Direction, result: int) -> bool:
        """Act on what a pump returned (not IDLE); True when the session closed."""
        if result == MORE:
            if not self.scheduled:
                self.scheduled = True
                self.reactor.call_soon(self._resume)
            return False
        up = self.up
        if result == DONE:
            if not self.cause:  # who finished first
                self.cause = "client_eof" if direction is up else "backend_eof"
                if direction is not up and not direction.received() and self.backend is not None:
                    # the backend said goodbye before a word: maybe unwell, a check decides
                    self.listener.group.backend_ended(self.backend, reset=False, spoke=False,
                                                      fin=True)
            assert up is not None and self.down is not None
            if up.shut and self.down.shut:
                self.close(self.cause)
                return True
            return False
        self._reset(from_client=(result == SRC_RESET) == (direction is up))
        return True

    def _reset(self, from_client: bool) -> None:
        """One side reset: reset the other so its peer sees the failure too."""
        down = self.down
        if not from_client and self.backend is not None and down is not None:
            self.listener.group.backend_ended(self.backend, reset=True, spoke=down.received(),
                                              fin=down.eof)
        self.close("client_reset" if from_client else "backend_reset",
                   reset_client=not from_client, reset_backend=from_client)

    def idle_due(self, now: float) -> None:
        """Its idle slot came due (relay/net/idle.py): close if quiet all along, else wait on."""
        idle = self.config.idle_timeout
        if self.state != RELAYING or idle is None:
            return
        deadline = self.last_active + idle
        if now >= deadline:
            self.close("idle_timeout")
        else:
            self.listener.idle.join(self, deadline, idle)

    # -- closing ----------------------------------------------------------

    def _drop_server_end(self, reset: bool = False) -> None:
        """Forget the backend socket and close it (closing takes it out of epoll); with
        reset, the backend sees RST, not FIN."""
        end = self.server_end
        if end is None:
            return
        self.server_end = None
        self.reactor.forget(end.fd)
        if reset:
            reset_on_close(end.sock, end.fd)
        _close(end.sock)

    def close(self, cause: str, reset: bool = False, reset_client: bool = False,
              reset_backend: bool = False) -> None:
        if self.state == CLOSED:
            return
        was_relaying = self.state == RELAYING
        self.state = CLOSED
        self.cause = cause
        if self.dial is not None:
            self.dial.cancel(reset or reset_backend)
        if self.idle_slot is not None:
            self.idle_slot.discard(self)
            self.idle_slot = None
        for direction in (self.up, self.down):
            if direction is not None:
                if direction.pipe is not None or direction.buf is not None:
                    direction.release()
                direction.other = None  # no cycle left: reference counting frees the session
        self._drop_server_end(reset or reset_backend)
        self.reactor.forget(self.client.fd)
        if reset or reset_client:
            reset_on_close(self.client.sock, self.client.fd)
        _close(self.client.sock)
        self.listener.session_closed(self, was_relaying)
