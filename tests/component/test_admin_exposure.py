"""An admin server reachable from other hosts needs a token for its actions; relay says
so when it starts (and when a reload takes the token away), and it says when it runs as root."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import one_listener
from tests.support.relayproc import toml_config
from tests.support.wait import wait_for

TOKEN = "t0ken-for-tests"
ACTION = "/backends/test/b1/drain"


def warned(relay, event: str) -> bool:
    return any(e.get("event") == event and e.get("level") == "warning" for e in relay.events)


def test_post_without_token_on_a_non_loopback_admin_is_403_and_gets_still_work(echo, start_relay):
    relay = start_relay(one_listener(echo.port), admin={"listen": "0.0.0.0:0"})
    status, body = relay.http("POST", ACTION)
    assert status == 403 and "token is required" in body and "admin.token_file" in body
    status, body = relay.http("POST", ACTION, {"Authorization": "Bearer anything"})
    assert status == 403  # no token is configured: none can be right
    assert relay.http("GET", "/healthz") == (200, "ok\n")
    assert relay.http("GET", "/status")[0] == 200
    assert relay.http("GET", "/metrics")[0] == 200
    assert '"admin_state": "ready"' in relay.http("GET", "/status")[1]  # nothing was done
    assert warned(relay, "admin_without_token")


def test_with_a_token_file_post_works_on_a_non_loopback_admin(echo, start_relay, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    relay = start_relay(one_listener(echo.port),
                        admin={"listen": "0.0.0.0:0", "token_file": str(token_file)})
    assert relay.http("POST", ACTION)[0] == 401
    status, body = relay.http("POST", ACTION, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and '"admin_state": "drain"' in body
    assert not warned(relay, "admin_without_token")


def test_loopback_admin_without_token_keeps_working_and_does_not_warn(echo, start_relay):
    relay = start_relay(one_listener(echo.port))  # 127.0.0.1
    assert relay.http("POST", ACTION)[0] == 200
    assert not warned(relay, "admin_without_token")


def test_a_reload_that_drops_the_token_warns_and_refuses_posts(echo, start_relay, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    relay = start_relay(one_listener(echo.port),
                        admin={"listen": "0.0.0.0:0", "token_file": str(token_file)})
    relay.config_path.write_text(toml_config(one_listener(echo.port),
                                             admin={"listen": "0.0.0.0:0"}))
    relay.signal(signal.SIGHUP)
    relay.wait_event(lambda e: e.get("event") == "reload")
    wait_for(lambda: warned(relay, "admin_without_token"))
    assert relay.http("POST", ACTION, {"Authorization": f"Bearer {TOKEN}"})[0] == 403


def test_running_as_root_is_logged_as_a_warning(echo, start_relay):
    if os.geteuid() != 0:
        pytest.skip("not running as root here")
    relay = start_relay(one_listener(echo.port))
    assert warned(relay, "running_as_root")
