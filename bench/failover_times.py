"""Detection and switch times for a refused vs a blackholed primary, with conf/relay.toml's
health, retry and timeout settings (interval 2s, timeout 1s, fall 3, connect_timeout 2s...).

    sudo .venv/bin/python bench/failover_times.py      # blackholed needs root (netns)

The primary and backup are the named test backends; "refused" stops the primary's
listener, "blackholed" takes the link of its network namespace down so SYNs vanish.
A new session opens every 20 ms throughout; each fault is watched for a bounded time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.named import Named, ask  # noqa: E402
from tests.support.netns import Netns, named_backend_in  # noqa: E402
from tests.support.probe import Probe  # noqa: E402
from tests.support.relayproc import RelayProcess  # noqa: E402

WATCH = 12.0  # seconds each fault is observed


def example_config(primary: str, backup: str) -> str:
    text = (REPO / "conf/relay.toml").read_text()
    text = text.replace('"127.0.0.1:7001"', f'"{primary}"').replace('"127.0.0.1:7002"', f'"{backup}"')
    text = text.replace('listen = "127.0.0.1:6380"', 'listen = "127.0.0.1:0"')
    text = text.replace('listen = "127.0.0.1:9100"', 'listen = "127.0.0.1:0"')
    text = re.sub(r'log_format = "text"', 'log_format = "json"', text)
    return text


def measure(name: str, primary_addr: str, backup_addr: str, fault, tmp: Path) -> None:
    relay = RelayProcess(example_config(primary_addr, backup_addr), tmp).wait_ready()
    port = relay.port()
    probe = Probe(lambda: ask(port), every=0.02).start()
    try:
        time.sleep(1.0)
        t_fault = time.monotonic()
        fault()
        relay.wait_event(lambda e: e.get("event") == "backend_down", timeout=WATCH)
        t_down = time.monotonic()
        time.sleep(2.0)
    finally:
        probe.stop()
        relay.stop()
    after = [r for r in probe.results if r[0] >= t_fault]
    waits = sorted(end - start for start, end, _, _ in after)
    switch = probe.first_served_by("backup", t_fault) - t_fault
    print(f"{name:<11} detection {t_down - t_fault:5.2f} s   first answer from backup "
          f"{switch * 1000:6.0f} ms after the fault   sessions {len(after)}, errors "
          f"{len(probe.errors(since=t_fault))}, slowest answer {waits[-1] * 1000:.0f} ms")


def main() -> int:
    print("example config: interval 2s, timeout 1s, fall 3, connect_timeout 2s, retry 4 in 5s")
    with tempfile.TemporaryDirectory() as tmp:
        primary, backup = Named("primary"), Named("backup")
        try:
            (Path(tmp) / "refused").mkdir()
            measure("refused", f"127.0.0.1:{primary.port}", f"127.0.0.1:{backup.port}",
                    primary.stop, Path(tmp) / "refused")
        finally:
            primary.stop()
            backup.stop()
        if os.geteuid() != 0:
            print("blackholed: skipped (needs root for network namespaces)")
            return 0
        a, b = Netns(f"fb{os.getpid() % 10000}a", 81), Netns(f"fb{os.getpid() % 10000}b", 82)
        servers: list[subprocess.Popen[bytes]] = []
        try:
            a.create()
            b.create()
            for ns, name in ((a, "primary"), (b, "backup")):
                servers.append(named_backend_in(ns, name, 7000, str(REPO)))
            time.sleep(1.0)
            (Path(tmp) / "blackholed").mkdir()
            measure("blackholed", f"{a.ip}:7000", f"{b.ip}:7000", a.vanish, Path(tmp) / "blackholed")
        finally:
            for proc in servers:
                proc.kill()
                proc.wait()
            a.remove()
            b.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
