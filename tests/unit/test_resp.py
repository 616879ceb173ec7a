"""RESP parsing and Sentinel replies: a sentinel is untrusted input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.resp import MAX_BULK, ProtocolError, RespError, encode, parse
from relay.core.sentinel import (
    config_epoch,
    healthy_replicas,
    master_address,
    role_of,
    switch_master_name,
)


def test_values_and_incomplete_input() -> None:
    reply = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"
    assert parse(reply) == ([b"127.0.0.1", b"6379"], len(reply))
    for cut in range(len(reply)):
        assert parse(reply[:cut]) is None
    assert parse(b"-ERR no\r\n") == (RespError("ERR no"), 9)
    assert parse(b"$-1\r\n") == (None, 5)
    assert parse(b":12\r\n+OK\r\n") == (12, 5)
    assert encode("ROLE") == b"*1\r\n$4\r\nROLE\r\n"


@pytest.mark.parametrize("hostile", [
    b"$%d\r\n" % (MAX_BULK + 1), b"*99999999\r\n", b"*1\r\n" * 10 + b":1\r\n", b"?\r\n",
    b"$abc\r\n", b"+" + b"x" * 5000, b"$3\r\nabcXY", b":" + b"9" * 30 + b"\r\n",
])
def test_hostile_replies_are_protocol_errors_not_memory(hostile: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(hostile)


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        parse(data)
    except ProtocolError:
        pass


def test_sentinel_replies_mean_only_what_they_are_shaped_as() -> None:
    assert master_address([b"10.0.0.1", b"6379"]) == "10.0.0.1:6379"
    assert master_address([b"::1", b"6379"]) == "[::1]:6379"
    for bad in (None, [b"10.0.0.1"], [b"x y", b"1"], [b"h", b"70000"], [b"h", b"-1"],
                RespError("ERR"), [[b"a"], b"1"]):
        assert master_address(bad) is None
    entry = [b"ip", b"10.0.0.2", b"port", b"6379", b"flags", b"slave", b"role-reported", b"slave"]
    down = [b"ip", b"10.0.0.3", b"port", b"6379", b"flags", b"slave,s_down",
            b"role-reported", b"slave"]
    restarted = [b"ip", b"10.0.0.4", b"port", b"6379", b"flags", b"slave",
                 b"role-reported", b"master"]
    assert healthy_replicas([entry, down, restarted, [b"odd"], b"junk"]) == ("10.0.0.2:6379",)
    assert healthy_replicas(RespError("x")) == ()
    assert role_of([b"master", 0, []]) == "master" and role_of(b"master") is None
    push = [b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6379"]
    assert switch_master_name(push) == "mymaster"
    assert switch_master_name([b"subscribe", b"+switch-master", 1]) is None


def test_config_epoch_is_read_from_sentinel_master_fields_and_nothing_else_counts() -> None:
    assert config_epoch([b"name", b"mymaster", b"config-epoch", b"7", b"flags", b"master"]) == 7
    assert config_epoch([b"config-epoch", b"0"]) == 0
    for bad in (None, b"7", [b"config-epoch"], [b"name", b"x"], [b"config-epoch", b"-1"],
                [b"config-epoch", b"7x"], [b"config-epoch", b"\xd9\xa3"], [b"config-epoch", [b"7"]],
                [b"config-epoch", b"9" * 17], [b"config-epoch", str(2 ** 53 + 1).encode()]):
        assert config_epoch(bad) is None, bad

