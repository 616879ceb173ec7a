"""The status page in a real browser (Debian's chromium, driven by Playwright from PyPI):
what it shows of a failover, the operator buttons and their errors, and that it talks to
nobody but the relay it came from."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.component.test_admin import listeners
from tests.conftest import IN_CI, require_tool
from tests.support.wait import wait_for

TOKEN = "s3cret-token"
REFRESH = 2.0  # seconds between the page's refreshes (REFRESH_MS in relay/ui/ui.js)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def artifacts() -> Path:
    path = Path(os.environ.get("RELAY_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()




def test_status_page_follows_a_failover_and_acts_with_the_token(browser, pair, start_relay,
                                                                  tmp_path):
    from playwright.sync_api import expect

    primary, _ = pair
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    relay = start_relay(listeners(*pair), admin={"token_file": str(token_file)})
    origin = f"http://127.0.0.1:{relay.admin_port}"

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        response = page.goto(origin + "/")
        assert response is not None and response.status == 200
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp
        assert response.headers.get("x-content-type-options") == "nosniff"

        def state(name: str) -> Any:
            return page.locator(f'tr[data-backend="{name}"] .state')

        # both backends up
        expect(state("primary")).to_have_text("UP", timeout=3 * REFRESH * 1000)
        expect(state("backup")).to_have_text("UP")
        expect(page.locator(".serving")).to_have_text("serving tier: 0")
        expect(page.locator("#freshness")).to_contain_text("live")
        shot = artifacts() / "status-page-up.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        width, height = png_size(data)
        assert 5_000 < len(data) < 5_000_000 and 800 <= width <= 4000 and 300 <= height <= 10_000

        # the primary stops: down, the backup serves, and the event says why, within a few refreshes
        primary.stop()
        few_refreshes = 4 * REFRESH * 1000
        expect(state("primary")).to_have_text("DOWN", timeout=few_refreshes)
        expect(page.locator(".serving")).to_have_text("serving tier: 1", timeout=few_refreshes)
        down = page.locator('#events li[data-event="backend_down"]').first
        expect(down).to_contain_text("primary DOWN (db): ", timeout=few_refreshes)
        cause = json.loads(relay.http("GET", "/status")[1])["events"]
        cause_text = next(e["cause"] for e in cause if e["event"] == "backend_down")
        expect(down).to_contain_text(cause_text)
        expect(page.locator('tr[data-backend="primary"] td.error')).to_contain_text("refused")
        page.screenshot(path=str(artifacts() / "status-page-failover.png"), full_page=True)

        # read-only without a token
        drain = page.locator('tr[data-backend="backup"] button[data-path$="/drain"]')
        expect(drain).to_be_disabled()

        # a wrong token: the 401 is shown, nothing changes
        page.fill("#token", "wrong-token")
        page.click("#token-save")
        expect(drain).to_be_enabled(timeout=few_refreshes)
        drain.click()
        expect(page.locator("#message")).to_contain_text("401", timeout=few_refreshes)
        backends = json.loads(relay.http("GET", "/status")[1])["listeners"][0]["backends"]
        assert backends[1]["admin_state"] == "ready"

        # the right token: drain the backup; /status says so, and the page too
        page.fill("#token", TOKEN)
        page.click("#token-save")
        page.locator('tr[data-backend="backup"] button[data-path$="/drain"]').click()
        expect(page.locator("#message")).to_contain_text("OK", timeout=few_refreshes)

        def admin_state() -> str:
            doc = json.loads(relay.http("GET", "/status")[1])
            return str(doc["listeners"][0]["backends"][1]["admin_state"])

        wait_for(lambda: admin_state() == "drain", timeout=few_refreshes / 1000)
        expect(page.locator('tr[data-backend="backup"] td.admin')).to_have_text(
            "drain", timeout=few_refreshes)
        expect(page.locator('#events li[data-event="backend_admin"]').first).to_contain_text(
            "backup admin state drain")
        # failback while tier 0 is down: the 409 is shown
        page.locator('button[data-path="/listeners/db/failback"]').click()
        expect(page.locator("#message")).to_contain_text("409", timeout=few_refreshes)
        # the token lives in sessionStorage only
        assert page.evaluate("sessionStorage.getItem('relay-admin-token')") == TOKEN
        assert page.evaluate("document.cookie") == ""
        assert context.cookies() == []
    finally:
        context.close()

    # the page asked its own origin only, the token was never in a URL, and CSP blocked nothing
    assert requests, "no request seen"
    foreign = [u for u in requests if f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" != origin]
    assert foreign == []
    assert not [u for u in requests if TOKEN in u or "wrong-token" in u]
    assert not [c for c in console if "Content Security Policy" in c or c.startswith("pageerror")]


def test_page_reads_on_a_phone(browser, pair, start_relay):
    relay = start_relay(listeners(*pair))
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{relay.admin_port}/")
        page.locator('tr[data-backend="primary"] .state').wait_for()
        # no horizontal scrolling: the table becomes one card per backend
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        shot = artifacts() / "status-page-phone.png"
        page.screenshot(path=str(shot), full_page=True)
        width, height = png_size(shot.read_bytes())
        assert width >= 390 and height >= 600
    finally:
        context.close()
