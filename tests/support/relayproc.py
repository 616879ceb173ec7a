"""Start relay as a real process on a config written by the test, and watch it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.process import stop_process

REPO = Path(__file__).resolve().parents[2]


def toml_config(listeners: list[dict[str, object]], runtime: dict[str, object] | None = None,
                admin_port: int = 0, admin: dict[str, object] | None = None) -> str:
    """A relay.toml text. Each listener dict may hold 'backends' (list of dicts), 'retry', 'health'."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):  # a list of strings or numbers (TOML arrays read like JSON's)
            return "[" + ", ".join(value(item) for item in v) + "]"
        return str(v)

    def table(d: dict[str, object]) -> list[str]:
        return [f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)
                and not (isinstance(v, list) and v and isinstance(v[0], dict))]

    rt = {"log_format": "json", "log_level": "info", "shutdown_grace": "5s"}
    rt.update(runtime or {})
    admin = dict(admin or {})
    listen = admin.pop("listen", f"127.0.0.1:{admin_port}")
    lines = ["[admin]", f"listen = {value(listen)}", *table(admin), "",
             "[runtime]", *table(rt), ""]
    for lst in listeners:
        lines += ["[[listener]]", *table(lst), ""]
        for sub in ("retry", "health", "authority"):
            if sub in lst:
                lines += [f"[listener.{sub}]", *table(lst[sub]), ""]  # type: ignore[arg-type]
        for backend in lst.get("backends", []):  # type: ignore[attr-defined]
            lines += ["[[listener.backend]]", *table(backend), ""]
    return "\n".join(lines)


def admin_request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                  timeout: float = 10.0, host: str = "127.0.0.1") -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class RelayProcess:
    """relay run in a subprocess; JSON log lines are collected as dicts in .events."""

    def __init__(self, config_text: str, tmp_path: Path, nofile: int | None = None,
                 extra_env: dict[str, str] | None = None, source: Path = REPO,
                 prefix: tuple[str, ...] = ()) -> None:
        """`source`: the tree whose relay/ runs (bench/ab.py runs other revisions); `prefix`:
        a command that execs relay (e.g. `ip netns exec NAME`: the PID stays relay's)."""
        self.config_path = tmp_path / "relay.toml"
        self.config_path.write_text(config_text)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(source) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra_env or {})

        def limit() -> None:
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "relay", "run", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, cwd=str(source), preexec_fn=limit,
        )
        self.pid = self.proc.pid
        self.events: list[dict[str, object]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ports: dict[str, int] = {}
        self.admin_port = 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_event(self, predicate: Callable[[dict[str, object]], bool],
                   timeout: float = 10.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        "event not seen; relay said:\n" + "\n".join(self.raw[-30:]))
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, listeners: int = 1, timeout: float = 15.0) -> RelayProcess:
        self.wait_event(lambda e: e.get("event") == "relay_started", timeout)
        for event in self.events:
            if event.get("event") == "listener_open":
                self.ports[str(event["listener"])] = int(str(event["address"]).rsplit(":", 1)[1])
            elif event.get("event") == "admin_open":
                self.admin_port = int(str(event["address"]).rsplit(":", 1)[1])
        assert len(self.ports) == listeners, self.ports
        return self

    def port(self, listener: str | None = None) -> int:
        if listener is None:
            (port,) = self.ports.values()
            return port
        return self.ports[listener]

    def count(self, event_name: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if e.get("event") == event_name)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, str]:
        """One request to this relay's admin server: (status, body)."""
        return admin_request(self.admin_port, method, path, headers, timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop this relay (by its PID) if still running, and release the pipe."""
        stop_process(self.proc)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
