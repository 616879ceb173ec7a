"""Durations and addresses, as written in the configuration file."""

from __future__ import annotations

import datetime
import re

import pytest

from relay.config.model import Address
from relay.config.values import format_duration, parse_address, parse_duration, show_value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("100us", 0.0001),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1s500ms", 1.5),
        ("2h45m", 9900.0),
        ("1.25h", 4500.0),
        ("10ms5us", 0.010005),
    ],
)
def test_duration_strings_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(0, 0.0), (2, 2.0), (1.5, 1.5), (0.05, 0.05)])
def test_duration_numbers_are_seconds(number: float, seconds: float) -> None:
    assert parse_duration(number) == seconds
    assert isinstance(parse_duration(number), float)


@pytest.mark.parametrize(
    "value",
    [
        "2 sec",
        "2sec",
        "2",  # unitless string: ambiguous (HAProxy reads milliseconds), so refused
        "",
        "s",
        "ms",
        "-1s",
        "+1s",
        " 2s",
        "2s ",
        "1d",
        "2S",
        "1.s",
        "1e3ms",
        "1m 30s",
        "1,5s",
        "five seconds",
        "off",
        "\uff12s",  # a full-width digit two
    ],
)
def test_bad_duration_strings_are_refused_with_the_expected_forms(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == (
        'must be a duration like "250ms", "2s", "5m" or a number of seconds, '
        f"got {show_value(value)}"
    )


def test_duration_message_quotes_what_the_user_wrote() -> None:
    with pytest.raises(ValueError, match=r'got "2 sec"$'):
        parse_duration("2 sec")


@pytest.mark.parametrize(
    ("value", "got"),
    [(True, "got true"), (False, "got false"), ([1], "got an array"), ({}, "got a table")],
)
def test_durations_of_other_types_are_refused(value: object, got: str) -> None:
    with pytest.raises(ValueError, match=got):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_negative_durations_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match=r"must be a duration >= 0, got -"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "9" * 400 + "h"])
def test_infinite_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.05, "50ms"),
        (0.0001, "100us"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (30.0, "30s"),
        (90, "90s"),
        (120, "2m"),
        (3600, "1h"),
    ],
)
def test_format_duration_spells_durations_naturally(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x", '"x"'),
        ('a"b', '"a\\"b"'),
        (True, "true"),
        (3, "3"),
        (2.5, "2.5"),
        (float("inf"), "inf"),
        ({}, "a table"),
        ([], "an array"),
        (datetime.date(2024, 1, 2), "a date/time (2024-01-02)"),
    ],
)
def test_show_value_renders_values_as_toml_would(value: object, shown: str) -> None:
    assert show_value(value) == shown


# --- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:6379", Address("127.0.0.1", 6379)),
        ("0.0.0.0:1", Address("0.0.0.0", 1)),
        ("10.0.0.11:65535", Address("10.0.0.11", 65535)),
        ("[::1]:6379", Address("::1", 6379)),
        ("[::]:80", Address("::", 80)),
        ("[2001:db8::1]:5432", Address("2001:db8::1", 5432)),
        ("[fe80::1%eth0]:22", Address("fe80::1%eth0", 22)),
        ("localhost:6379", Address("localhost", 6379)),
        (
            "redis-primary.default.svc.cluster.local:6379",
            Address("redis-primary.default.svc.cluster.local", 6379),
        ),
        ("redis_primary:6379", Address("redis_primary", 6379)),  # compose service names
        ("example.com.:443", Address("example.com.", 443)),
        ("db1:0080", Address("db1", 80)),
    ],
)
def test_good_addresses(text: str, address: Address) -> None:
    assert parse_address(text, allow_port_zero=False) == address
    assert parse_address(text, allow_port_zero=True) == address


@pytest.mark.parametrize(
    ("text", "shown"),
    [("127.0.0.1:6379", "127.0.0.1:6379"), ("[::1]:6379", "[::1]:6379"), ("db:1", "db:1")],
)
def test_addresses_print_as_written(text: str, shown: str) -> None:
    assert str(parse_address(text, allow_port_zero=False)) == shown


def test_port_zero_only_for_listen_addresses() -> None:
    assert parse_address("127.0.0.1:0", allow_port_zero=True) == Address("127.0.0.1", 0)
    assert parse_address("[::1]:0", allow_port_zero=True) == Address("::1", 0)
    with pytest.raises(ValueError, match=r"port must be 1\.\.65535 .*got 0"):
        parse_address("127.0.0.1:0", allow_port_zero=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "missing port"),
        ("10.0.0.1", "missing port"),
        ("[::1]", "missing port"),
        ("::1", "must be in brackets"),
        ("::1:6379", "must be in brackets"),
        ("2001:db8::1:80", "must be in brackets"),
        ("fe80::1%eth0:22", "must be in brackets"),
        (":6379", "missing host"),
        ("host:", 'port must be an integer 1..65535, got ""'),
        ("host:http", 'port must be an integer 1..65535, got "http"'),
        ("host:65536", "port must be an integer 1..65535, got 65536"),
        ("host:100000", "got 100000"),
        ("host:-1", 'got "-1"'),
        ("host:+80", r'got "\+80"'),
        ("host: 80", 'got " 80"'),
        ("[::1]6379", r'must be "\[v6\]:port"'),
        ("[127.0.0.1]:80", "is not an IPv6 address"),
        ("[nope]:80", "is not an IPv6 address"),
        ("256.1.1.1:80", "not a valid IPv4 address"),
        ("1.2.3:80", "not a valid IPv4 address"),
        ("bad host:80", "not a valid hostname"),
        ("-leading.example:80", "not a valid hostname"),
        ("a..b:80", "not a valid hostname"),
        ("http://db:80", r'must be "host:port" or "\[v6\]:port", got "http://db:80"'),
        ("", "missing port"),
    ],
)
def test_bad_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_address(text, allow_port_zero=False)
    assert re.search(message, str(caught.value)), str(caught.value)


def test_port_range_message_mentions_zero_for_listen_addresses() -> None:
    with pytest.raises(ValueError, match=r"port must be an integer 0\.\.65535, got 70000"):
        parse_address("127.0.0.1:70000", allow_port_zero=True)


@pytest.mark.parametrize(
    ("value", "got"), [(6379, "got 6379"), (True, "got true"), ({}, "got a table")]
)
def test_addresses_must_be_strings(value: object, got: str) -> None:
    with pytest.raises(ValueError, match=f'must be a string "host:port", {got}'):
        parse_address(value, allow_port_zero=False)
