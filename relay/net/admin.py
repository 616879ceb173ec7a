"""The admin HTTP server (product.md section 5), on the reactor like everything else.

h11 parses HTTP; this module only routes. Each connection is bounded, so a slow or
hostile admin client can neither stall relay nor grow its memory nor lock others out:
- one request at a time: the next pipelined request is read only once the answer to the
  previous one has gone out, and nothing is read while an answer waits to be sent, so a
  client that never reads holds at most one answer (whose body is shared) and RECV_SIZE;
- headers 16 KiB, body 64 KiB; the request head must arrive within HEAD_TIMEOUT and the
  whole exchange within REQUEST_TIMEOUT;
- at MAX_CONNECTIONS, a new client evicts the connection that has waited longest on its
  own client (a slow head, an idle keep-alive, an answer it does not read; else the oldest
  waiting for a render), so probes of /healthz and /readyz always get in;
- out of descriptors (EMFILE), a descriptor kept in reserve, or the eviction above,
  lets a queued client in; with neither, accept rests ACCEPT_PAUSE (logged once);
- / is the status page (relay/ui: its HTML, /ui.js and /ui.css, from this origin only,
  under a Content-Security-Policy that allows nothing else), fed by /status and /history;
- /metrics is rendered a slice at a time (relay.net.sliced) at most once per METRICS_TTL,
  and every scrape in that window shares the same bytes.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

import h11

from relay.core.events import History
from relay.core.health import ADMIN_STATES
from relay.core.tiers import FailbackRefused
from relay.errors import UnknownName
from relay.logs import log
from relay.metrics import Measured, Metrics
from relay.net.accept import RESOURCE_ERRORS, AcceptPause
from relay.net.reactor import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, Reactor
from relay.net.resolve import SockAddr, listening_socket
from relay.net.sliced import SlicedJob
from relay.ui import page_file

if TYPE_CHECKING:
    from relay.net.timers import Timer


class Operated(Measured, Protocol):
    """What the admin endpoints ask of the process they serve (relay.net.server's
    RelayServer and ControlServer): its health, status, metrics and operator actions."""

    reactor: Reactor
    metrics: Metrics
    history: History

    def stalled(self) -> str: ...
    def not_ready(self) -> list[str]: ...
    def status(self) -> dict[str, object]: ...
    def set_backend_state(self, listener: str, backend: str, state: str) -> str: ...
    def failback(self, listener: str) -> int: ...

MAX_HEADERS = 16 * 1024
MAX_BODY = 64 * 1024
RECV_SIZE = 16 * 1024
SEND_BUFFER = 128 * 1024  # SO_SNDBUF of a client (Linux doubles it): kernel memory per client
HEAD_TIMEOUT = 5.0  # seconds for a request head (and for an idle keep-alive)
REQUEST_TIMEOUT = 10.0  # seconds for a whole request and its answer
MAX_CONNECTIONS = 64
BACKLOG = 128
ACCEPT_BATCH = 16
METRICS_TTL = 1.0  # seconds a rendered /metrics is served to every scrape

# on every answer: the page runs only its own script and style, in no frame, and no answer
# is taken for another type than it says
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'none';"
                                " frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]
PAGE_FILES = {"/": "index.html", "/ui.js": "ui.js", "/ui.css": "ui.css"}

_KNOWN_STATUS = {s.value for s in HTTPStatus}
Response = tuple[int, str, bytes, list[tuple[str, str]]]  # status, content type, body, headers


def _text(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return status, "text/plain; charset=utf-8", (text + "\n").encode(), headers or []


def _json(status: int, value: object) -> Response:
    return status, "application/json", (json.dumps(value, indent=1) + "\n").encode(), []


def is_loopback(address: SockAddr) -> bool:
    """Whether only this host can reach `address` (127.0.0.0/8, ::1, ::ffff:127.x)."""
    try:
        ip = ipaddress.ip_address(address.sockaddr[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class AdminServer:
    def __init__(self, server: Operated, address: SockAddr, token: str | None) -> None:
        self.server = server
        self.reactor: Reactor = server.reactor
        self.address = address
        self.token = token
        self.sock: socket.socket | None = None
        self.connections: set[AdminConnection] = set()
        self.bound = ""
        self.evicted = 0
        self.accepted = 0
        self.pause = AcceptPause(self.reactor, "admin", lambda: self.sock)
        self._reserve: int | None = None  # a descriptor kept free for admin clients
        self._rendered: bytes | None = None  # the last /metrics text, and when it was made
        self._rendered_at = 0.0
        self._render: SlicedJob[bytes] | None = None
        self._render_waiters: list[AdminConnection] = []

    @staticmethod
    def bind(address: SockAddr) -> tuple[socket.socket, str]:
        return listening_socket(address, BACKLOG)

    @property
    def needs_token(self) -> bool:
        """POST actions are refused outright: reachable from elsewhere and no token set."""
        return self.token is None and not is_loopback(self.address)

    def open(self, bound: tuple[socket.socket, str] | None = None) -> None:
        """Listen (on a socket a reload already bound, if given)."""
        sock, self.bound = bound or self.bind(self.address)
        self.sock = sock
        self.reactor.register(sock.fileno(), EPOLLIN, self)
        self._take_reserve()
        log.info("admin_open", address=self.bound)
        self._warn_if_open()

    def set_token(self, token: str | None) -> None:
        """A reload's token (None: no token_file)."""
        was = self.needs_token
        self.token = token
        if self.needs_token and not was:
            self._warn_if_open()

    def _warn_if_open(self) -> None:
        if self.needs_token:
            log.warning("admin_without_token", address=self.bound or self.address.text,
                        effect="POST actions answer 403 until admin.token_file is set")

    def close(self) -> None:
        if self._render is not None:
            self._render.cancel()
            self._render = None
        for conn in list(self.connections):
            conn.close()
        if self.sock is not None:
            self.reactor.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self._release_reserve()

    def on_event(self, fd: int, events: int) -> None:
        if self.sock is None or self.pause.paused:
            return
        first = self.accepted  # connections accepted from here on are not evicted for others
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = self.sock.accept()
            except BlockingIOError:
                self._take_reserve()  # released for nothing: the queue was empty
                return
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    continue  # ECONNABORTED and the like: that client is gone
                if not self._queued():
                    self._take_reserve()
                    return  # accept says EMFILE with no descriptor free, even if nobody waits
                # someone waits: the reserve, or an admin client (already read) that is
                # still waiting on its own client, makes room; a probe still gets in
                if self._release_reserve() or self._evict(before=self.accepted):
                    continue
                self.pause.pause(exc)
                return
            self.pause.logged = False
            if len(self.connections) >= MAX_CONNECTIONS and not self._evict(before=first):
                client.close()  # every slot is busy with a request of ours: refuse
                continue
            conn = AdminConnection(self, client)
            self.connections.add(conn)
            conn.on_event(conn.fd, EPOLLIN)  # a probe's request is usually there already

    def _queued(self) -> int:
        """Clients waiting in the listening socket's accept queue (Linux TCP_INFO of a
        listening socket: tcpi_unacked); 1 when it cannot be known."""
        assert self.sock is not None
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            return int(struct.unpack_from("I", info, 24)[0])
        except (OSError, struct.error):
            return 1

    def _take_reserve(self) -> None:
        """Hold a descriptor for the admin: when sessions use up every other one, /healthz
        and /readyz can still be accepted (on the reserve's number)."""
        if self._reserve is None and self.sock is not None:
            try:
                self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass  # out of descriptors right now: the next connection to close gives one

    def _release_reserve(self) -> bool:
        if self._reserve is None:
            return False
        os.close(self._reserve)
        self._reserve = None
        return True

    def _evict(self, before: int) -> bool:
        """Make room: close the connection (accepted before number `before`) that has waited
        longest on its own client, else the oldest one waiting for a /metrics render (a
        scraper can retry; a probe locked out cannot); False if there is none."""
        candidates = [c for c in self.connections if c.serial < before]
        if not candidates:
            return False

        def order(c: AdminConnection) -> tuple[int, float, int]:
            if c.waiting_since is None:
                return (1, 0.0, c.serial)
            return (0, c.waiting_since, c.serial)

        min(candidates, key=order).close()
        self.evicted += 1
        return True

    def on_crash(self, exc: BaseException) -> None:
        pass

    # -- routing -------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str],
                conn: AdminConnection) -> Response | None:
        """The answer, or None when it comes later through conn.deliver (/metrics)."""
        path = unquote(target.split("?", 1)[0])
        # each segment unquoted on its own: a backend discovered by DNS is named
        # "<name>/<address>", which a URL carries as <name>%2F<address>
        parts = [unquote(p) for p in target.split("?", 1)[0].split("/") if p]
        get_routes: dict[str, Callable[[], Response]] = {
            "/healthz": self._healthz, "/readyz": self._readyz, "/status": self._status,
            "/history": self._history,
        }
        if path in PAGE_FILES:
            if method not in ("GET", "HEAD"):
                return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
            return page_file(PAGE_FILES[path])
        if path in get_routes or path == "/metrics":
            if method not in ("GET", "HEAD"):
                return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
            if path == "/metrics":
                return self._metrics(conn)
            return get_routes[path]()
        is_backend = len(parts) == 4 and parts[0] == "backends" and parts[3] in ADMIN_STATES
        is_failback = len(parts) == 3 and parts[0] == "listeners" and parts[2] == "failback"
        if not (is_backend or is_failback):
            return _text(404, "not found")
        if method != "POST":
            return _text(405, "method not allowed", [("Allow", "POST")])
        if self.needs_token:
            return _text(403, f"a token is required: the admin listens on {self.bound}, not on"
                              " loopback, so POST actions need admin.token_file to be set")
        if not self._authorized(headers.get("authorization", "")):
            return _text(401, "a valid bearer token is required",
                         [("WWW-Authenticate", 'Bearer realm="relay"')])
        if is_backend:
            return self._set_state(parts[1], parts[2], parts[3])
        return self._failback(parts[1])

    def _authorized(self, header: str) -> bool:
        if self.token is None:
            return True
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())

    def _metrics(self, conn: AdminConnection) -> Response | None:
        if self._rendered is not None and self.reactor.now - self._rendered_at < METRICS_TTL:
            return self._metrics_response(self._rendered)
        self._render_waiters.append(conn)
        if self._render is None:
            steps = self.server.metrics.render_steps(self.server)
            self._render = SlicedJob(self.reactor, steps, self._rendered_now)
        return None

    @staticmethod
    def _metrics_response(text: bytes) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return 200, CONTENT_TYPE_LATEST, text, []

    def _rendered_now(self, pieces: list[bytes], error: BaseException | None) -> None:
        self._render = None
        if error is None:
            self._rendered = b"".join(pieces)
            self._rendered_at = self.reactor.now
            response = self._metrics_response(self._rendered)
        else:
            response = _text(500, "metrics could not be rendered (see relay's log)")
        waiters, self._render_waiters = self._render_waiters, []
        for conn in waiters:
            conn.deliver(response)

    def _healthz(self) -> Response:
        stalled = self.server.stalled()
        return _text(503, stalled) if stalled else _text(200, "ok")

    def _readyz(self) -> Response:
        problems = self.server.not_ready()
        if problems:
            return _text(503, "; ".join(problems))
        return _text(200, "ready")

    def _status(self) -> Response:
        return _json(200, self.server.status())

    def _history(self) -> Response:
        """The status page's sparklines: per-second sessions and bytes, last few minutes."""
        body = json.dumps(self.server.history.export(), separators=(",", ":")).encode()
        return 200, "application/json", body, []

    def _set_state(self, listener: str, backend: str, state: str) -> Response:
        try:
            new = self.server.set_backend_state(listener, backend, state)
        except UnknownName as exc:
            return _text(404, str(exc.args[0]))
        return _json(200, {"listener": listener, "backend": backend, "admin_state": new})

    def _failback(self, listener: str) -> Response:
        try:
            tier = self.server.failback(listener)
        except UnknownName as exc:
            return _text(404, str(exc.args[0]))
        except FailbackRefused as exc:
            return _text(409, str(exc))
        return _json(200, {"listener": listener, "active_tier": tier})


class AdminConnection:
    """One client: reads a request, answers it, and only then reads the next one."""

    def __init__(self, admin: AdminServer, sock: socket.socket) -> None:
        self.admin = admin
        self.reactor = admin.reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.serial = admin.accepted  # accept order: the tie-break among evictees
        admin.accepted += 1
        sock.setblocking(False)
        try:  # each send copies at most this much into the kernel (not 4 MB per client)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.out: deque[memoryview] = deque()  # the answer being sent (its body is shared)
        self.request: h11.Request | None = None
        self.method = ""
        self.body_size = 0
        self.closing = False
        self.parked = False  # waiting for an answer of ours (a /metrics render)
        self.waiting_since: float | None = self.reactor.now  # waiting on the client since
        self.mask = EPOLLIN
        self.reactor.register(self.fd, EPOLLIN, self)
        self.deadline: Timer | None = self.reactor.call_later(HEAD_TIMEOUT, self._timed_out)

    def on_event(self, fd: int, events: int) -> None:
        if self.out and events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
            self._write()
            if not self.out and self.fd >= 0:
                self._process()  # a pipelined request may be waiting
            return
        if not self.mask & EPOLLIN:
            if events & (EPOLLERR | EPOLLHUP):
                self.close()  # gone while we were busy with its answer
            return
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.h11.receive_data(data)
        self._process()

    def on_crash(self, exc: BaseException) -> None:
        self.close()

    def _process(self) -> None:
        """Handle what h11 has buffered, up to the next answer that cannot go out at once."""
        while not self.closing and not self.out and not self.parked:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:  # 400, or 431 for headers over MAX_HEADERS
                self._fail(exc.error_status_hint, str(exc) or "bad request")
                return
            if event is h11.NEED_DATA:
                self._want(EPOLLIN)
                return
            if event is h11.PAUSED:
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    self.waiting_since = self.reactor.now
                    self._restart_deadline(HEAD_TIMEOUT)
                    continue
                self._want(0)  # nothing more to read or say: the deadline ends it
                return
            if isinstance(event, h11.Request):
                if event.http_version not in (b"1.0", b"1.1"):
                    self._fail(505, "HTTP/1.0 or HTTP/1.1 only")
                    return
                self.request = event
                self.body_size = 0
                self._restart_deadline(REQUEST_TIMEOUT)
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > MAX_BODY:
                    self._fail(413, "request body too large")
                    return
            elif isinstance(event, h11.Data):
                self.body_size += len(event.data)
                if self.body_size > MAX_BODY:
                    self._fail(413, "request body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._answer()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _answer(self) -> None:
        request = self.request
        assert request is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        self.method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        response = self.admin.respond(self.method, target, headers, self)
        if response is None:
            self.parked = True
            self.waiting_since = None  # on us, not on the client: evicted only last
            self._want(0)
            return
        self._reply(response)  # (_process goes on with the next request, if it can)
        if response[0] >= 400 and log.debug_enabled:
            log.debug("admin_request", method=self.method, target=target, status=response[0])

    def deliver(self, response: Response) -> None:
        """The answer a parked request waited for; then go on with the next request."""
        if self.fd < 0:
            return
        self.parked = False
        self._reply(response)
        if not self.out and self.fd >= 0 and not self.closing:
            self._process()

    def _reply(self, response: Response) -> None:
        status, ctype, body, extra = response
        self._send(status, ctype, b"" if self.method == "HEAD" else body, extra,
                   content_length=len(body))

    def _fail(self, status: int, text: str) -> None:
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = (text + "\n").encode()
            try:
                self._send(status, "text/plain; charset=utf-8", body, [("Connection", "close")],
                           content_length=len(body))
            except h11.LocalProtocolError:
                pass
        self.closing = True
        if not self.out:
            self.close()

    def _send(self, status: int, ctype: str, body: bytes, extra: list[tuple[str, str]],
              content_length: int) -> None:
        headers = [("Content-Type", ctype), ("Content-Length", str(content_length)),
                   *SECURITY_HEADERS, *extra]
        reason = HTTPStatus(status).phrase.encode() if status in _KNOWN_STATUS else b""
        events: list[h11.Event] = [h11.Response(status_code=status, headers=headers, reason=reason)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        for event in events:  # the body goes out as the very bytes object: no copy per client
            for chunk in self.h11.send_with_data_passthrough(event) or ():
                if chunk:
                    self.out.append(memoryview(chunk))
        if self.h11.our_state is h11.MUST_CLOSE:
            self.closing = True
        self.waiting_since = self.reactor.now
        self._write()

    def _write(self) -> None:
        out = self.out
        while out and self.fd >= 0:
            try:
                n = self.sock.send(out[0])
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            if n < len(out[0]):
                out[0] = out[0][n:]
                break
            out.popleft()
        if self.fd < 0:
            return
        if out:
            self._want(EPOLLOUT)
        elif self.closing:
            self.close()

    def _want(self, mask: int) -> None:
        if mask != self.mask and self.fd >= 0:  # change the interest set only when it changes
            self.mask = mask
            self.reactor.modify(self.fd, mask)

    def _restart_deadline(self, seconds: float) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.reactor.call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self.deadline = None
        if self.out or self.parked:
            self.close()  # a client that does not read its answer gets nothing more
        elif self.h11.their_state is h11.IDLE:
            self.close()  # an idle keep-alive, or a client that never said anything
        else:
            self._fail(408, "request timeout")
            if self.fd >= 0 and self.out:
                self.close()

    def close(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.fd >= 0:
            self.reactor.unregister(self.fd)
            self.sock.close()
            self.fd = -1
        self.out.clear()
        self.closing = True
        self.parked = False
        self.waiting_since = None
        self.admin.connections.discard(self)
        self.admin._take_reserve()  # the descriptor just freed, before a session takes it
