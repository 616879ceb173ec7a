"""Fixtures for chaos tests: a Toxiproxy 2.x endpoint and the toxiproxy-python client.

Set TOXIPROXY_URL (e.g. http://127.0.0.1:8474) to use a real Toxiproxy; otherwise the
Python stand-in in tests/toxiproxy_server runs in-process for the session.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer


@pytest.fixture(scope="session")
def toxiproxy_url() -> Iterator[str]:
    """Base URL of the Toxiproxy API, without a trailing slash."""
    url = os.environ.get("TOXIPROXY_URL")
    if url:
        yield url.rstrip("/")
        return
    from tests.toxiproxy_server import ToxiproxyServer

    with ToxiproxyServer("127.0.0.1", 0) as server:
        yield server.url


@pytest.fixture
def toxiproxy(toxiproxy_url: str) -> Iterator[Toxiproxy]:
    """The unmodified toxiproxy-python client, pointed at toxiproxy_url (process-wide
    setting, restored afterwards)."""
    parts = urllib.parse.urlsplit(toxiproxy_url)
    saved = APIConsumer.host, APIConsumer.port
    client = Toxiproxy()
    client.update_api_consumer(parts.hostname, parts.port or 8474)
    yield client
    APIConsumer.host, APIConsumer.port = saved
