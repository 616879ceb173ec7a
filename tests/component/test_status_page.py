"""The status page's resources and data, as served by a real relay's admin listener."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.component.test_admin import AUTH, listeners
from tests.support.wait import wait_for


@pytest.fixture
def relay(pair, start_relay, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    return start_relay(listeners(*pair), admin={"token_file": str(token_file)})


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_page_and_its_files_carry_a_self_only_policy(relay):
    for path, ctype in (("/", "text/html"), ("/ui.js", "text/javascript"), ("/ui.css", "text/css"),
                        ("/status", "application/json"), ("/history", "application/json")):
        response = get(relay.admin_port, path)
        assert response.status == 200, path
        assert response.getheader("Content-Type").startswith(ctype), path
        csp = response.getheader("Content-Security-Policy")
        assert csp is not None and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.getheader("X-Content-Type-Options") == "nosniff"
    page = get(relay.admin_port, "/").body.decode()  # type: ignore[attr-defined]
    # no inline script or handler (the policy would block them), nothing from elsewhere
    assert '<script src="/ui.js"' in page and "<script>" not in page
    assert " onclick=" not in page and " onload=" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    js = get(relay.admin_port, "/ui.js").body.decode()  # type: ignore[attr-defined]
    assert "innerHTML" not in js and "localStorage" not in js and "document.cookie" not in js
    # error answers carry the headers too, and the page is not POSTable
    response = get(relay.admin_port, "/nope")
    assert response.status == 404 and response.getheader("X-Content-Type-Options") == "nosniff"
    assert relay.http("POST", "/", AUTH)[0] == 405


def test_status_keeps_events_and_history_samples(relay, pair):
    primary, _ = pair
    assert relay.http("POST", "/backends/db/backup/drain", AUTH)[0] == 200
    primary.stop()

    def events() -> list[dict[str, object]]:
        return json.loads(relay.http("GET", "/status")[1])["events"]

    wait_for(lambda: any(e["event"] == "backend_down" for e in events()), timeout=10)
    recent = events()
    kinds = [e["event"] for e in recent]
    down = next(e for e in recent if e["event"] == "backend_down")
    assert down["backend"] == "primary" and down["listener"] == "db" and down["cause"]
    admin = next(e for e in recent if e["event"] == "backend_admin")
    assert admin["backend"] == "backup" and admin["state"] == "drain"
    assert kinds.index("backend_down") < kinds.index("backend_admin")  # newest first
    assert all(isinstance(e["at"], float | int) for e in recent)
    status = json.loads(relay.http("GET", "/status")[1])
    assert {"suspect", "state", "admin_state"} <= set(status["listeners"][0]["backends"][0])

    wait_for(lambda: len(json.loads(relay.http("GET", "/history")[1])["sessions"]) >= 2,
             timeout=10)
    history = json.loads(relay.http("GET", "/history")[1])
    assert len(history["sessions"]) == len(history["bytes_per_second"]) == len(history["seconds_ago"])
    assert history["seconds_ago"][-1] == 0
