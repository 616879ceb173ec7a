"""The admin HTTP server (product.md section 5), on the reactor like everything else.

h11 parses HTTP; this module only routes. Each connection is bounded: headers
(16 KiB), body (64 KiB), a deadline per request, and a cap on open connections,
so a slow or hostile admin client cannot stall relay or grow its memory.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import h11

from relay.core.health import ADMIN_STATES
from relay.core.tiers import FailbackRefused
from relay.logs import log
from relay.net.reactor import EPOLLIN, EPOLLOUT, Reactor
from relay.net.resolve import SockAddr, listening_socket

if TYPE_CHECKING:
    from relay.net.server import RelayServer
    from relay.net.timers import Timer

MAX_HEADERS = 16 * 1024
MAX_BODY = 64 * 1024
REQUEST_TIMEOUT = 10.0  # seconds for a whole request (and for an idle keep-alive)
MAX_CONNECTIONS = 64
BACKLOG = 128
ACCEPT_BATCH = 16

_KNOWN_STATUS = {s.value for s in HTTPStatus}
Response = tuple[int, str, bytes, list[tuple[str, str]]]  # status, content type, body, headers


def _text(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return status, "text/plain; charset=utf-8", (text + "\n").encode(), headers or []


def _json(status: int, value: object) -> Response:
    return status, "application/json", (json.dumps(value, indent=1) + "\n").encode(), []


class AdminServer:
    def __init__(self, server: RelayServer, address: SockAddr, token: str | None) -> None:
        self.server = server
        self.reactor: Reactor = server.reactor
        self.address = address
        self.token = token
        self.sock: socket.socket | None = None
        self.connections: set[AdminConnection] = set()
        self.bound = ""

    @staticmethod
    def bind(address: SockAddr) -> tuple[socket.socket, str]:
        return listening_socket(address, BACKLOG)

    def open(self, bound: tuple[socket.socket, str] | None = None) -> None:
        """Listen (on a socket a reload already bound, if given)."""
        sock, self.bound = bound or self.bind(self.address)
        self.sock = sock
        self.reactor.register(sock.fileno(), EPOLLIN, self)
        log.info("admin_open", address=self.bound)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        if self.sock is not None:
            self.reactor.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def on_event(self, fd: int, events: int) -> None:
        if self.sock is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError:
                return  # EMFILE and friends: the next wake-up tries again
            if len(self.connections) >= MAX_CONNECTIONS:
                client.close()  # the cap: refuse rather than queue
                continue
            self.connections.add(AdminConnection(self, client))

    def on_crash(self, exc: BaseException) -> None:
        pass

    # -- routing -------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str]) -> Response:
        path = unquote(target.split("?", 1)[0])
        parts = [p for p in path.split("/") if p]
        get_routes: dict[str, Callable[[], Response]] = {
            "/metrics": self._metrics, "/healthz": self._healthz,
            "/readyz": self._readyz, "/status": self._status,
        }
        if path in get_routes:
            if method not in ("GET", "HEAD"):
                return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
            return get_routes[path]()
        is_backend = len(parts) == 4 and parts[0] == "backends" and parts[3] in ADMIN_STATES
        is_failback = len(parts) == 3 and parts[0] == "listeners" and parts[2] == "failback"
        if not (is_backend or is_failback):
            return _text(404, "not found")
        if method != "POST":
            return _text(405, "method not allowed", [("Allow", "POST")])
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

    def _metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return 200, CONTENT_TYPE_LATEST, self.server.metrics.render(self.server), []

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

    def _set_state(self, listener: str, backend: str, state: str) -> Response:
        from relay.net.server import UnknownName

        try:
            new = self.server.set_backend_state(listener, backend, state)
        except UnknownName as exc:
            return _text(404, str(exc.args[0]))
        return _json(200, {"listener": listener, "backend": backend, "admin_state": new})

    def _failback(self, listener: str) -> Response:
        from relay.net.server import UnknownName

        try:
            tier = self.server.failback(listener)
        except UnknownName as exc:
            return _text(404, str(exc.args[0]))
        except FailbackRefused as exc:
            return _text(409, str(exc))
        return _json(200, {"listener": listener, "active_tier": tier})


class AdminConnection:
    def __init__(self, admin: AdminServer, sock: socket.socket) -> None:
        self.admin = admin
        self.reactor = admin.reactor
        self.sock = sock
        self.fd = sock.fileno()
        sock.setblocking(False)
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.out = bytearray()
        self.request: h11.Request | None = None
        self.body_size = 0
        self.closing = False
        self.mask = EPOLLIN
        self.reactor.register(self.fd, EPOLLIN, self)
        self.deadline: Timer | None = self.reactor.call_later(REQUEST_TIMEOUT, self._timed_out)

    def on_event(self, fd: int, events: int) -> None:
        if events & EPOLLOUT:
            self._write()
            if not self.out and not self.closing:
                self._process()  # a pipelined request may be waiting
        if events & ~EPOLLOUT and not self.closing:
            try:
                data = self.sock.recv(65536)
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
        while not self.closing:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:  # 400, or 431 for headers over MAX_HEADERS
                self._fail(exc.error_status_hint, str(exc) or "bad request")
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    self._restart_deadline()
                    continue
                return
            if isinstance(event, h11.Request):
                if event.http_version not in (b"1.0", b"1.1"):
                    self._fail(505, "HTTP/1.0 or HTTP/1.1 only")
                    return
                self.request = event
                self.body_size = 0
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
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        status, ctype, body, extra = self.admin.respond(method, target, headers)
        self._send(status, ctype, b"" if method == "HEAD" else body, extra,
                   content_length=len(body))
        if status >= 400 and log.debug_enabled:
            log.debug("admin_request", method=method, target=target, status=status)

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
        headers = [("Content-Type", ctype), ("Content-Length", str(content_length)), *extra]
        reason = HTTPStatus(status).phrase.encode() if status in _KNOWN_STATUS else b""
        self.out += self.h11.send(h11.Response(status_code=status, headers=headers, reason=reason))
        if body:
            self.out += self.h11.send(h11.Data(data=body))
        self.out += self.h11.send(h11.EndOfMessage())
        if self.h11.our_state is h11.MUST_CLOSE:
            self.closing = True
        self._write()

    def _write(self) -> None:
        if self.fd < 0:
            return
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            del self.out[:n]
        want = EPOLLOUT if self.out else EPOLLIN
        if self.out or not self.closing:
            if want != self.mask:  # change the interest set only when it changes
                self.mask = want
                self.reactor.modify(self.fd, want)
            return
        self.close()

    def _restart_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.reactor.call_later(REQUEST_TIMEOUT, self._timed_out)

    def _timed_out(self) -> None:
        self.deadline = None
        if self.h11.their_state is h11.IDLE and not self.out:
            self.close()  # an idle keep-alive: nothing to say
        else:
            self._fail(408, "request timeout")
            if self.sock is not None and self.out:
                self.close()  # a client that does not read either gets nothing more

    def close(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.fd >= 0:
            self.reactor.unregister(self.fd)
            self.sock.close()
            self.fd = -1
        self.closing = True
        self.admin.connections.discard(self)
