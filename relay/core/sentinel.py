"""What Redis Sentinel's (and ROLE's) replies mean, as authority reports. Pure.

Replies are untrusted: anything not shaped as expected means "no answer" rather
than a guess.
"""

from __future__ import annotations

import re

from relay.core.resp import RespValue, text

_HOST_RE = re.compile(r"[A-Za-z0-9_.:%-]{1,253}")
_BAD_FLAGS = frozenset({"s_down", "o_down", "disconnected"})


def address_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(host_value: RespValue, port_value: RespValue) -> str | None:
    host, port = text(host_value), text(port_value)
    if host is None or port is None or not _HOST_RE.fullmatch(host) or not port.isdigit():
        return None
    number = int(port)
    return address_text(host, number) if 0 < number < 65536 else None


def master_address(reply: RespValue) -> str | None:
    """SENTINEL get-master-addr-by-name: [ip, port], or nil for an unknown master."""
    if isinstance(reply, list) and len(reply) == 2:
        return _address(reply[0], reply[1])
    return None


def healthy_replicas(reply: RespValue) -> tuple[str, ...]:
    """SENTINEL replicas: one flat [field, value, ...] list per replica. Only replicas the
    sentinel sees up and that report themselves as slaves: a restarted old primary says
    role master until Sentinel has turned it into a replica."""
    if not isinstance(reply, list):
        return ()
    found: list[str] = []
    for entry in reply:
        if not isinstance(entry, list) or len(entry) % 2:
            continue
        fields = {text(entry[i]): text(entry[i + 1]) for i in range(0, len(entry), 2)}
        flags = set((fields.get("flags") or "").split(","))
        if flags & _BAD_FLAGS or fields.get("role-reported") != "slave":
            continue
        address = _address(fields.get("ip"), fields.get("port"))
        if address is not None:
            found.append(address)
    return tuple(sorted(set(found)))


MAX_EPOCH = 2 ** 53  # (a larger "epoch" is no sentinel's: ignored)


def config_epoch(reply: RespValue) -> int | None:
    """SENTINEL master <name>: one flat [field, value, ...] list; its "config-epoch", the
    epoch of the failover that made the current master (the same on every sentinel that
    agrees on it, unlike a count of the changes one relay saw). None when absent or not a
    number."""
    if not isinstance(reply, list) or len(reply) % 2:
        return None
    for i in range(0, len(reply), 2):
        if text(reply[i]) == "config-epoch":
            value = text(reply[i + 1])
            if value is not None and value.isascii() and value.isdigit() and len(value) <= 16:
                number = int(value)
                return number if number <= MAX_EPOCH else None
            return None
    return None


def role_of(reply: RespValue) -> str | None:
    """ROLE: ["master", offset, replicas] / ["slave", ...] / ["sentinel", ...]."""
    if isinstance(reply, list) and reply:
        return text(reply[0])
    return None


def is_switch_master(reply: RespValue) -> bool:
    """A pub/sub push: ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]."""
    return (isinstance(reply, list) and len(reply) == 3 and text(reply[0]) == "message"
            and text(reply[1]) == "+switch-master")


def switch_master_name(reply: RespValue) -> str | None:
    if not is_switch_master(reply):
        return None
    assert isinstance(reply, list)
    payload = text(reply[2]) or ""
    return payload.split(" ", 1)[0] or None


__all__ = ["address_text", "config_epoch", "healthy_replicas", "is_switch_master",
           "master_address", "role_of", "switch_master_name"]
