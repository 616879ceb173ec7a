"""A pending connect is judged by SO_ERROR, always (relay/net/connect.py): a writable event
alone (a stale one for a reused fd number, or an error the kernel reports with the writable
edge) never makes a failed connect look connected."""

from __future__ import annotations

import select
import socket

from relay.config import parse_config
from relay.net.reactor import EPOLLIN, EPOLLOUT
from relay.net.server import RelayServer
from tests.conftest import one_listener
from tests.support.relayproc import toml_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_a_refused_connect_seen_only_through_so_error_on_epollout_is_a_failure():
    config = toml_config(one_listener(_closed_port(), retry={"attempts": 1}))
    server = RelayServer(parse_config(config), admin=False)  # its loop is turned by hand here
    try:
        server.open()
        listener = server.listeners[0]
        assert listener.sock is not None
        before = set(server.reactor.handlers)
        with socket.create_connection(listener.sock.getsockname()[:2], timeout=5) as client:
            listener.on_event(listener.sock.fileno(), EPOLLIN)  # accept; the dial starts
            fresh = [fd for fd in server.reactor.handlers if fd not in before]
            session = next(iter(server.sessions))
            backend_fds = [fd for fd in fresh if fd != session.client.fd]
            assert len(backend_fds) == 1, "the connect should be pending (EINPROGRESS)"
            fd = backend_fds[0]
            poller = select.poll()  # wait (bounded) until the kernel has the refusal
            poller.register(fd, select.POLLOUT)
            assert poller.poll(5000)
            # the event says only "writable": the error is in SO_ERROR alone
            server.reactor.handlers[fd].on_event(fd, EPOLLOUT)
            backend = listener.group.backends[0]
            assert backend.connect_errors["refused"] == 1
            assert not backend.sessions  # not relaying to a socket that never connected
            assert session.cause == "no_backend"
            client.settimeout(5)
            assert client.recv(1) == b""
    finally:
        for session in list(server.sessions):
            session.close("shutdown", reset=True)
        server.close()
