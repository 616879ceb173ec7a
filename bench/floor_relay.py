"""NOT relay: the floor, the least a Python epoll relay can do per byte and per connection,
for comparison. The benchmark runs it as target "python-floor" next to HAProxy and relay, so
each run shows what CPython itself costs on the machine; relay's figures are read against it.

    python bench/floor_relay.py LISTEN_PORT:BACKEND_PORT [LISTEN_PORT:BACKEND_PORT ...]

127.0.0.1 only; LISTEN_PORT 0 takes a free port. Prints "listening 127.0.0.1:P -> 127.0.0.1:B"
per pair, then "ready" (flushed) once every socket listens. SIGTERM or SIGINT: exit 0.

What it does, and nothing more (stdlib only; no splice, timers, health checks, metrics, logs):
one epoll; per client a non-blocking connect to the backend; both sockets registered once,
edge-triggered (IN|OUT|RDHUP|ET), never modified. Bytes are read into one shared 64 KiB
buffer and sent on at once; what the receiver does not take is kept (a bytes copy) and that
direction stops reading until an EPOLLOUT edge has let it go. A FIN is passed on
(shutdown(SHUT_WR)) once the bytes before it are gone; the second FIN is passed on by closing
both sockets. An error or reset of either closes both at once. The same cheap primitives as
relay's data path: C socket objects (_socket), TCP_NODELAY inherited from the listening
socket, and a short read taken as "socket empty" (the next bytes bring a new edge; not after
a hang-up, whose edge is the last). A floor only: no limits, no accept back-off.
"""

from __future__ import annotations

import _socket
import errno
import select
import signal
import socket
import sys

SIZE = 64 * 1024
IN, OUT, RDHUP, HUP, ERR = (select.EPOLLIN, select.EPOLLOUT, select.EPOLLRDHUP, select.EPOLLHUP,
                             select.EPOLLERR)
MASK = IN | OUT | RDHUP | select.EPOLLET
INET, STREAM = socket.AF_INET, socket.SOCK_STREAM
ends: dict[int, End] = {}  # fd -> End, both sockets of every session
view = memoryview(bytearray(SIZE))  # the one scratch buffer


class End:
    """One socket of a session. `out`: bytes from the peer this socket has not taken yet."""

    __slots__ = ("eof", "fd", "hup", "out", "peer", "readable", "ready", "shut", "sock")

    def __init__(self, sock: _socket.socket, ready: bool) -> None:
        self.sock, self.fd, self.ready = sock, sock.fileno(), ready  # ready: connected
        self.out = b""
        self.readable = self.hup = False
        self.eof = self.shut = False  # FIN read from it / FIN sent to it
        self.peer: End = self


def close(end: End) -> bool:
    for e in (end, end.peer):
        del ends[e.fd]
        e.sock.close()  # also leaves the epoll set
    return False


def finish(src: End, dst: End) -> bool:
    """src said EOF: FIN to dst once dst has every byte before it. False: session closed."""
    if dst.out or not dst.ready:
        return True  # flush() passes the FIN on
    if src.shut:  # the other direction is done too: close both (close sends dst its FIN)
        return close(src)
    try:
        dst.sock.shutdown(socket.SHUT_WR)
    except OSError:
        return close(src)
    dst.shut = True
    return True


def pump(src: End, dst: End) -> bool:
    """Move bytes src -> dst until src is empty or dst is full. False: session closed."""
    if dst.out or src.eof:
        return True
    recv_into, send = src.sock.recv_into, dst.sock.send
    while src.readable:
        try:
            n = recv_into(view)
        except BlockingIOError:
            src.readable = False
            return True
        except OSError:
            return close(src)
        if not n:
            src.eof = True
            return finish(src, dst)
        if n < SIZE and not src.hup:
            src.readable = False  # a short read emptied it (edge-triggered: new bytes, new edge)
        sent = 0
        if dst.ready:
            try:
                sent = send(view[:n])
            except BlockingIOError:
                pass
            except OSError:
                return close(src)
        if sent < n:
            dst.out = bytes(view[sent:n])  # keep the rest; stop reading src until it is gone
            return True
    return True


def flush(dst: End) -> bool:
    """dst is writable: send what it has not taken, then read its peer on. False: closed."""
    if dst.out:
        try:
            sent = dst.sock.send(dst.out)
        except BlockingIOError:
            return True
        except OSError:
            return close(dst)
        dst.out = dst.out[sent:]
        if dst.out:
            return True
    src = dst.peer
    return finish(src, dst) if src.eof else pump(src, dst)


def accept(listener: socket.socket, backend: tuple[str, int], ep: select.epoll) -> None:
    for _ in range(64):
        try:
            cfd, _addr = listener._accept()  # type: ignore[attr-defined]
        except OSError:  # BlockingIOError: no more for now; anything else: the floor gives up
            return
        client = _socket.socket(INET, STREAM, 0, cfd)
        client.setblocking(False)
        try:
            server = _socket.socket(INET, STREAM | socket.SOCK_NONBLOCK)
        except OSError:
            client.close()
            continue
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = server.connect_ex(backend)
        if err not in (0, errno.EINPROGRESS):
            client.close()
            server.close()
            continue
        c, s = End(client, True), End(server, err == 0)
        c.peer, s.peer = s, c
        ends[c.fd], ends[s.fd] = c, s
        ep.register(c.fd, MASK)
        ep.register(s.fd, MASK)


def on_event(end: End, ev: int) -> None:
    if ev & ERR:  # a reset, or the backend refused
        close(end)
        return
    if ev & OUT:
        if not end.ready:
            if ev & HUP:  # connect failed
                close(end)
                return
            end.ready = True  # connected
        if (end.out or end.peer.eof) and not end.shut and not flush(end):
            return
    if ev & (IN | RDHUP | HUP):
        end.readable = True
        if ev & (RDHUP | HUP):
            end.hup = True
        pump(end, end.peer)


def serve(pairs: list[tuple[int, int]]) -> None:
    ep = select.epoll()
    listeners: dict[int, tuple[socket.socket, tuple[str, int]]] = {}
    for port, backend_port in pairs:
        ls = socket.socket(INET, STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        ls.bind(("127.0.0.1", port))
        ls.listen(4096)
        ls.setblocking(False)
        listeners[ls.fileno()] = (ls, ("127.0.0.1", backend_port))
        ep.register(ls.fileno(), IN)
        print(f"listening 127.0.0.1:{ls.getsockname()[1]} -> 127.0.0.1:{backend_port}")
    print("ready", flush=True)
    poll, get = ep.poll, ends.get
    try:
        while True:
            later = []
            for fd, ev in poll():
                end = get(fd)
                if end is not None:
                    on_event(end, ev)
                elif fd in listeners:
                    later.append(listeners[fd])
            # accepts after the batch: a new socket cannot take the number of one closed in it
            for ls, backend in later:
                accept(ls, backend, ep)
    finally:
        for end in ends.values():
            end.sock.close()
        for ls, _ in listeners.values():
            ls.close()
        ep.close()


def main(argv: list[str]) -> int:
    try:
        pairs = [(int(a), int(b)) for a, b in (arg.split(":") for arg in argv)]
    except ValueError:
        pairs = []
    if not pairs:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve(pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
