"""[listener.authority] and role_url: read, defaults, and every mistake at its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.config import load_config, parse_config
from relay.config.authority import parse_role_url
from relay.config.model import Address, AuthorityConfig
from relay.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

SENTINEL = """
[[listener]]
name = "redis"
listen = "127.0.0.1:6380"
[listener.authority]
kind = "redis_sentinel"
sentinels = ["127.0.0.1:26379", "127.0.0.1:26380", "[::1]:26381"]
master_name = "mymaster"
{extra}
"""

HTTP = """
[[listener]]
name = "pg"
listen = "127.0.0.1:5433"
[listener.authority]
kind = "http"
{extra}
[[listener.backend]]
name = "pg1"
address = "127.0.0.1:5432"
{role}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return {p.path: p.message for p in caught.value.problems}


def test_sentinel_authority_needs_no_backends_and_takes_the_defaults() -> None:
    (listener,) = parse_config(SENTINEL.format(extra="")).listeners
    assert listener.backends == ()
    assert listener.authority == AuthorityConfig(
        "redis_sentinel", (Address("127.0.0.1", 26379), Address("127.0.0.1", 26380),
                           Address("::1", 26381)), "mymaster", None, 1.0, 30.0, "backup")


def test_every_authority_key_is_read() -> None:
    extra = 'password_file = "/run/s"\ninterval = "250ms"\nstale_after = "5s"\nreplicas = "exclude"'
    (listener,) = parse_config(SENTINEL.format(extra=extra)).listeners
    a = listener.authority
    assert a is not None
    assert (a.password_file, a.interval, a.stale_after, a.replicas) == ("/run/s", 0.25, 5.0,
                                                                        "exclude")


def test_http_authority_reads_role_urls() -> None:
    (listener,) = parse_config(HTTP.format(extra="", role='role_url = "http://127.0.0.1:8008/primary"')).listeners
    assert listener.backends[0].role_url == "http://127.0.0.1:8008/primary"
    assert parse_role_url(listener.backends[0].role_url) == (Address("127.0.0.1", 8008), "/primary")
    assert parse_role_url("http://db") == (Address("db", 80), "/")


def test_without_authority_backends_are_still_required_and_role_url_is_refused() -> None:
    text = '[[listener]]\nname = "a"\nlisten = "127.0.0.1:1"\n'
    assert "listener[0].backend" in problems(text)
    text += '[[listener.backend]]\nname = "b"\naddress = "127.0.0.1:2"\nrole_url = "http://x:1/"\n'
    assert "kind = \"http\"" in problems(text)["listener[0].backend[0].role_url"]


@pytest.mark.parametrize(("extra", "path", "message"), [
    ('kind = "zookeeper"', "kind", 'must be one of "redis_sentinel", "http"'),
    ('interval = "0s"', "interval", "> 0"),
    ('stale_after = "soon"', "stale_after", "duration"),
    ('replicas = "sometimes"', "replicas", '"backup", "exclude"'),
    ('password_file = ""', "password_file", "file path"),
    ('colour = "red"', "colour", "unknown key"),
])
def test_bad_authority_keys_are_reported_at_their_path(extra: str, path: str, message: str) -> None:
    text = SENTINEL.format(extra=extra).replace('kind = "redis_sentinel"\n', "", 1) \
        if extra.startswith("kind") else SENTINEL.format(extra=extra)
    found = problems(text)
    assert message in found[f"listener[0].authority.{path}"], found


@pytest.mark.parametrize(("sentinels", "message"), [
    ("[]", "non-empty list"),
    ('"127.0.0.1:26379"', "non-empty list"),
    ('["127.0.0.1:26379", "127.0.0.1:26379"]', "listed twice"),
    ('["127.0.0.1"]', "port"),
    ("[" + ", ".join(f'"127.0.0.1:{p}"' for p in range(1, 17)) + "]", "at most 15"),
])
def test_bad_sentinel_lists_are_refused(sentinels: str, message: str) -> None:
    text = re.sub(r"sentinels = .*", f"sentinels = {sentinels}", SENTINEL.format(extra=""))
    assert message in problems(text)["listener[0].authority.sentinels"]


@pytest.mark.parametrize("name", ['""', '"my master"', '"a\\r\\nSHUTDOWN"', "7"])
def test_a_master_name_that_could_smuggle_commands_is_refused(name: str) -> None:
    text = SENTINEL.format(extra="").replace('"mymaster"', name)
    assert "letters, digits" in problems(text)["listener[0].authority.master_name"]


def test_sentinel_kind_requires_sentinels_and_master_name() -> None:
    text = '[[listener]]\nname = "a"\nlisten = "127.0.0.1:1"\n[listener.authority]\nkind = "redis_sentinel"\n'
    found = problems(text)
    assert found["listener[0].authority.sentinels"] == "is required"
    assert found["listener[0].authority.master_name"] == "is required"


def test_http_kind_needs_role_url_on_every_backend_and_no_sentinel_keys() -> None:
    found = problems(HTTP.format(extra='master_name = "m"', role=""))
    assert "is required" in found["listener[0].backend[0].role_url"]
    assert "redis_sentinel" in found["listener[0].authority.master_name"]


@pytest.mark.parametrize("url", ["https://x/primary", "http://u:p@x/", "http://x/?a=1", "ftp://x",
                                 "http:///p", "http://x:99999/", "http://x/a b", "7"])
def test_bad_role_urls_are_refused(url: str) -> None:
    role = f"role_url = {url}" if url == "7" else f'role_url = "{url}"'
    assert "listener[0].backend[0].role_url" in problems(HTTP.format(extra="", role=role))


def test_the_sentinel_example_parses() -> None:
    config = load_config(str(REPO / "conf" / "sentinel.toml"))
    (listener,) = config.listeners
    assert listener.authority is not None and listener.authority.kind == "redis_sentinel"
    assert listener.authority.replicas == "exclude"
    commented = "\n".join(line[2:] for line in (REPO / "conf" / "sentinel.toml").read_text()
                          .splitlines() if (line.startswith("# ") and "=" in line)
                          or line.startswith("# [")).split("[[listener]]", 1)[1]
    (http,) = parse_config("[[listener]]" + commented).listeners
    assert http.authority is not None and http.authority.kind == "http"
    assert all(b.role_url for b in http.backends)


def test_an_authority_needs_a_single_process_for_now() -> None:
    text = '[runtime]\nworkers = 2\n' + SENTINEL.format(extra="")
    assert "must be 1" in problems(text)["runtime.workers"]
