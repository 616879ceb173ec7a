"""Real redis-server processes for tests: on loopback, or inside a network namespace."""

from __future__ import annotations

import socket
import subprocess

from tests.support.process import stop_process
from tests.support.wait import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_port_of(host: str, port: int, timeout: float = 5.0) -> int:
    """Ask a redis (directly or through relay) which port it serves on: tells who answered."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n")
        data = b""
        while data.count(b"\r\n") < 5:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
    return int(data.split(b"\r\n")[4])


class RedisServer:
    def __init__(self, server_bin: str, port: int, workdir: str, host: str = "127.0.0.1",
                 netns: str | None = None, extra: tuple[str, ...] = ()) -> None:
        """`extra`: more redis-server options, e.g. ("--timeout", "1")."""
        self.cmd = [server_bin, "--port", str(port), "--bind", host, "--save", "",
                    "--appendonly", "no", "--dir", workdir, "--protected-mode", "no", *extra]
        if netns:
            self.cmd = ["ip", "netns", "exec", netns, *self.cmd]
        self.host = host
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def answers() -> bool:
            try:
                redis_port_of(self.host, self.port, timeout=1)
            except OSError:
                assert proc.poll() is None, f"redis-server exited: {self.cmd}"
                return False
            return True

        wait_for(answers, message=f"redis-server did not start: {self.cmd}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
