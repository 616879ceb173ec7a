"""PROXY protocol v1/v2: what relay writes and what it believes (relay/core/proxy_header.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.proxy_header import (
    NEED_MORE,
    V1_MAX,
    V2_MAX,
    V2_SIGNATURE,
    Header,
    Invalid,
    encode_v1,
    encode_v2,
    parse,
)

ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1)).filter(
    lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None)
port = st.integers(0, 65535)
endpoints = st.one_of(
    st.tuples(st.tuples(ipv4, port), st.tuples(ipv4, port)),
    st.tuples(st.tuples(ipv6, port), st.tuples(ipv6, port)))


def test_v1_header_is_the_spec_line() -> None:
    assert encode_v1(("192.0.2.1", 56324), ("198.51.100.2", 443)) == \
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
    assert encode_v1(("2001:db8::1", 1), ("::1", 2)) == b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"


def test_ipv4_mapped_peer_is_sent_as_ipv4() -> None:
    assert encode_v1(("::ffff:127.0.0.1", 5), ("::ffff:127.0.0.2", 6)) == \
        b"PROXY TCP4 127.0.0.1 127.0.0.2 5 6\r\n"


def test_v2_local_for_checks_carries_no_address() -> None:
    header = encode_v2(None, None)
    assert header == V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parse(header) == Header(16, None, None)


@given(endpoints)
def test_v1_round_trip(ends: tuple[tuple[str, int], tuple[str, int]]) -> None:
    source, destination = ends
    data = encode_v1(source, destination)
    assert len(data) <= V1_MAX
    assert parse(data + b"payload", "v1") == Header(len(data), source, destination)


@given(endpoints)
def test_v2_round_trip(ends: tuple[tuple[str, int], tuple[str, int]]) -> None:
    source, destination = ends
    data = encode_v2(source, destination)
    assert parse(data + b"payload", "v2") == Header(len(data), source, destination)


@given(endpoints, st.sampled_from(["v1", "v2"]))
def test_every_proper_prefix_asks_for_more(ends: tuple[tuple[str, int], tuple[str, int]],
                                           version: str) -> None:
    data = encode_v1(*ends) if version == "v1" else encode_v2(*ends)
    for cut in range(len(data)):
        assert parse(data[:cut], "any") is NEED_MORE


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_stay_in_bounds(data: bytes) -> None:
    result = parse(data)
    assert result is NEED_MORE or isinstance(result, Invalid | Header)
    if isinstance(result, Header):
        assert result.length <= min(len(data), V2_MAX)
    if result is NEED_MORE:  # a prefix never asks for more past the spec's sizes
        assert len(data) < V2_MAX


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200))
def test_mutated_v2_headers_never_raise(noise: bytes) -> None:
    data = V2_SIGNATURE + noise
    result = parse(data, "v2")
    assert result is NEED_MORE or isinstance(result, Invalid | Header)


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\n", "expected a PROXY header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed v1 header"),
    (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "v1 addresses do not match TCP4"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "malformed v1 address or port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "malformed v1 address or port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 header too long or not ended by CRLF"),
    (b"PROXY " + b"x" * V1_MAX, "v1 header too long or not ended by CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xff 2\r\n", "v1 header is not ASCII"),
    (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "v2 header: unsupported version"),
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "v2 header: unknown command"),
    (V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "v2 header: address block too short"),
    (V2_SIGNATURE + b"\x21\x51\x00\x00", "v2 header: unknown address family"),
])
def test_malformed_headers_say_why(data: bytes, reason: str) -> None:
    assert parse(data) == Invalid(reason)


def test_a_version_not_accepted_is_invalid() -> None:
    assert parse(encode_v2(None, None), "v1") == Invalid("expected a v1 header")
    assert parse(encode_v1(("1.2.3.4", 1), ("5.6.7.8", 2)), "v2") == Invalid("expected a v2 header")


def test_v1_unknown_and_v2_tlvs_are_accepted() -> None:
    assert parse(b"PROXY UNKNOWN\r\nrest") == Header(15, None, None)
    header = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2))
    tlv = b"\x04\x00\x02ab"  # a NOOP TLV
    size = int.from_bytes(header[14:16], "big") + len(tlv)
    with_tlv = header[:14] + size.to_bytes(2, "big") + header[16:] + tlv
    assert parse(with_tlv) == Header(len(with_tlv), ("10.0.0.1", 1), ("10.0.0.2", 2))
