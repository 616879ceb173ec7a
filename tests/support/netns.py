"""Test hosts in network namespaces (root only): addresses the test itself creates."""

from __future__ import annotations

import subprocess


class Netns:
    """A network namespace joined to the host by a veth pair: a host we can make vanish."""

    def __init__(self, name: str, subnet: int) -> None:
        self.name = name
        self.host_if = f"{name}-h"
        self.ns_if = f"{name}-n"
        self.host_ip = f"10.231.{subnet}.1"
        self.ip = f"10.231.{subnet}.2"

    def create(self) -> Netns:
        for cmd in (
            f"ip netns add {self.name}",
            f"ip link add {self.host_if} type veth peer name {self.ns_if}",
            f"ip link set {self.ns_if} netns {self.name}",
            f"ip addr add {self.host_ip}/30 dev {self.host_if}",
            f"ip link set {self.host_if} up",
            f"ip netns exec {self.name} ip addr add {self.ip}/30 dev {self.ns_if}",
            f"ip netns exec {self.name} ip link set {self.ns_if} up",
            f"ip netns exec {self.name} ip link set lo up",
        ):
            subprocess.run(cmd.split(), check=True, capture_output=True)
        return self

    def vanish(self) -> None:
        """Take the link down inside: SYNs go nowhere, connects time out."""
        subprocess.run(f"ip netns exec {self.name} ip link set {self.ns_if} down".split(),
                       check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run(f"ip link del {self.host_if}".split(), capture_output=True)
        subprocess.run(f"ip netns del {self.name}".split(), capture_output=True)


def named_backend_in(ns: Netns, name: str, port: int, repo: str) -> subprocess.Popen[bytes]:
    """A tests.support.named backend listening on ns.ip:port inside the namespace (60 s max)."""
    import sys

    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from tests.support.named import Named;"
            "n = Named(sys.argv[2], int(sys.argv[3]), host=sys.argv[4]); time.sleep(60)")
    return subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", code, repo,
                             name, str(port), ns.ip])
