"""A Toxiproxy 2.x compatible server in Python, for chaos tests where the Go
``toxiproxy-server`` cannot be installed. Reference: docs/toxiproxy-api.md (shared docs).

In a test::

    from tests.toxiproxy_server import ToxiproxyServer

    with ToxiproxyServer("127.0.0.1", 0) as server:   # or: port = server.start() / server.stop()
        requests.post(f"{server.url}/proxies", json={...})

From a shell: ``python -m tests.toxiproxy_server --host 127.0.0.1 --port 8474`` (port 0 picks a
free port); the first line on stdout is ``listening HOST:PORT``; SIGTERM/SIGINT stop it.

Layout (after Shopify/toxiproxy): ``api`` routes and handlers, ``proxy`` listeners and the
proxy collection, ``connection`` + ``link`` the data path, ``toxic_collection`` the toxic
chains, ``toxics/`` one module per toxic, ``web`` a small HTTP/1.1 server, all on one asyncio
loop in one thread.

Known differences from the Go server:

- Listens on loopback only. An empty or wildcard ``listen`` (``""``, ``:P``, ``0.0.0.0:P``,
  ``[::]:P``) binds 127.0.0.1:P and [::1]:P and reports ``[::]:P``, as Go reports its one
  dual-stack socket; other non-loopback addresses fail with a 500.
- Decode errors are worded as the Go 1.23 toolchain that built the 2.12.0 release words them
  (``Go struct field LatencyToxic.attributes.jitter``); newer Go words some differently.
- Each accepted client is dialled at once, in parallel (Go dials one at a time per proxy, so
  a hanging dial holds up the next clients and API changes of that proxy); stopping a proxy
  cancels a dial in progress.
- ``bandwidth`` with ``rate`` <= 0 passes data unlimited (as documented; the Go code would
  loop), and ``slicer`` never makes empty pieces (Go recurses for ever with size 0 / variation
  0, or can panic when ``size_variation`` exceeds half a chunk).
- The version is reported as 2.12.0. No ``/metrics``, no request-id header, no HTTP
  timeouts; API requests are handled one at a time.
- ``bad request body: <detail>`` details imitate Go's encoding/json wording but are not
  byte-identical for every malformed input.
"""

from .api import VERSION
from .server import ToxiproxyServer

__all__ = ["VERSION", "ToxiproxyServer"]
