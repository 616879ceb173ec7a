"""Sessions relay cuts (shutdown grace over, a second signal) are reset on both sides: no
peer can take a cut for a complete transfer (product.md §4)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time

import pytest

from tests.conftest import one_listener
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for

TOTAL = 200 * 1024 * 1024  # bytes each transfer would move if it were not cut
CHUNK = 64 * 1024


class Backend:
    """'D': sends TOTAL bytes; 'U': reads until EOF. Records how each connection ended."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.server = ThreadServer(self._serve)

    def _serve(self, conn: socket.socket) -> None:
        kind = conn.recv(1).decode()
        try:
            if kind == "D":
                block, sent = b"d" * CHUNK, 0
                while sent < TOTAL:
                    conn.sendall(block)
                    sent += CHUNK
                self.outcomes[kind] = "complete"
            else:
                got = 0
                while data := conn.recv(CHUNK):
                    got += len(data)
                self.outcomes[kind] = f"eof after {got} bytes"
        except OSError as exc:
            self.outcomes[kind] = type(exc).__name__
        finally:
            conn.close()


def relay_sessions(relay: object) -> int:
    return int(json.loads(relay.http("GET", "/status")[1])["sessions"])  # type: ignore[attr-defined]


def slow_download(port: int, result: dict[str, str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"D")
        got, deadline = 0, time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                data = s.recv(CHUNK)
                if not data:
                    result["D"] = f"eof after {got} bytes"
                    return
                got += len(data)
                time.sleep(0.005)
            result["D"] = "still going"
        except OSError as exc:
            result["D"] = type(exc).__name__


def slow_upload(port: int, result: dict[str, str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"U")
        block, sent, deadline = b"u" * CHUNK, 0, time.monotonic() + 60
        try:
            while sent < TOTAL and time.monotonic() < deadline:
                s.sendall(block)
                sent += CHUNK
                time.sleep(0.005)
            result["U"] = "sent all"
        except OSError as exc:
            result["U"] = type(exc).__name__


@pytest.mark.parametrize("how", ["grace_expired", "second_signal"])
def test_a_cut_transfer_ends_in_a_reset_for_client_and_backend(start_relay, how):
    backend = Backend()
    try:
        grace = "1s" if how == "grace_expired" else "60s"
        relay = start_relay(one_listener(backend.server.port, access_log=True),
                            runtime={"shutdown_grace": grace})
        client: dict[str, str] = {}
        threads = [threading.Thread(target=f, args=(relay.port(), client))
                   for f in (slow_download, slow_upload)]
        for t in threads:
            t.start()
        wait_for(lambda: relay_sessions(relay) == 2)  # both transfers under way
        relay.signal(signal.SIGTERM)
        if how == "second_signal":
            relay.wait_event(lambda e: e.get("event") == "shutdown")
            time.sleep(0.3)
            relay.signal(signal.SIGTERM)
        for t in threads:
            t.join(70)
        assert relay.wait(20) == 0
        with contextlib.suppress(AssertionError):  # (the asserts below say what is missing)
            wait_for(lambda: len(backend.outcomes) == 2)
        print(f"\n{how}: client {client}, backend {backend.outcomes}")
        assert client["D"] == "ConnectionResetError"  # not a normal EOF mid-download
        assert backend.outcomes["U"] == "ConnectionResetError"  # not a complete-looking upload
        assert backend.outcomes["D"] in ("ConnectionResetError", "BrokenPipeError")
        causes = {e.get("cause") for e in relay.events if e.get("event") == "access"}
        assert causes == {how}
    finally:
        backend.server.close()
