"""The `relay` command: run, check, probe, --version (product.md section 2).

User errors print one line per problem and exit 2; an internal failure exits 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import sys
from collections.abc import Sequence
from typing import Any

from relay import __version__
from relay.build import flavour
from relay.config import Config, load_config
from relay.config.converters import MAX_WORKERS
from relay.errors import ConfigError, ConfigProblem
from relay.logs import log
from relay.net.server import RelayServer
from relay.runconfig import prepare

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "conf/relay.toml"


def _config_path(arg: str | None) -> str:
    return arg or os.environ.get("RELAY_CONFIG") or DEFAULT_CONFIG


def _seconds(value: float | None) -> str:
    if value is None:
        return "off"
    if value >= 1 and value == int(value):
        return f"{int(value)}s"
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def summary(config: Config) -> str:
    rt = config.runtime
    lines = [
        f"{config.source}: OK",
        f"admin    {config.admin.listen}" + ("  (token required)" if config.admin.token_file else ""),
        f"runtime  workers={rt.workers or 'auto'} max_connections={rt.max_connections} "
        f"splice={rt.splice} log={rt.log_format}/{rt.log_level} "
        f"shutdown_grace={_seconds(rt.shutdown_grace)}",
    ]
    for lc in config.listeners:
        h = lc.health
        lines.append(
            f"listener {lc.name}  {lc.listen}  balance={lc.balance}  "
            f"health={h.kind} every {_seconds(h.interval)} (rise {h.rise}, fall {h.fall})  "
            f"failback={lc.failback}"
            + (f" after {_seconds(lc.failback_delay)}" if lc.failback == "auto" else "")
        )
        for bc in sorted(lc.backends, key=lambda b: b.tier):
            lines.append(f"  tier {bc.tier}  {bc.name:<16} {bc.address}  weight {bc.weight}")
    return "\n".join(lines)


def cmd_check(path: str) -> int:
    config = prepare(path).config  # what `run` needs: addresses resolved, the token read
    print(summary(config))
    return EXIT_OK


def _raise_fd_limit(config: Config) -> None:
    """Take the hard RLIMIT_NOFILE as the soft one (as HAProxy does); warn if it is still short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    needed = 2 * config.runtime.max_connections + 64
    if soft < needed:
        log.warning("fd_limit_low", nofile=soft, needed=needed,
                    effect="accept pauses when descriptors run out")


def cmd_run(path: str) -> int:
    ready = prepare(path)
    config = ready.config
    log.configure(config.runtime.log_format, config.runtime.log_level)
    if os.geteuid() == 0:
        log.warning("running_as_root", effect="a flaw in relay would hold every privilege;"
                    " run it as an unprivileged user (the image does)")
    _raise_fd_limit(config)
    workers = config.runtime.workers or min(os.cpu_count() or 1, MAX_WORKERS)
    if workers > 1:
        from relay.supervisor import Supervisor

        supervisor = Supervisor(path, ready, workers)
        _open(supervisor.server, path)
        return supervisor.run()
    server = RelayServer(config, ready.resolved, admin_token=ready.admin_token)
    _open(server, path)
    server.run()
    return EXIT_OK


def _open(server: RelayServer, path: str) -> None:
    """Bind the server's sockets; an address that cannot be had is the user's error."""
    try:
        server.open()
    except OSError as exc:
        server.reactor.close()
        key, address = server.failed_address
        raise ConfigError(path, [ConfigProblem(
            key, f"cannot listen on {address}: {exc.strerror or exc}")]) from None


def _admin_get(config: Config, path: str, timeout: float) -> tuple[int, bytes]:
    listen = config.admin.listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    conn = http.client.HTTPConnection(host, listen.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _admin_fetch(config: Config, command: str, path: str, timeout: float) -> bytes | None:
    """The body of a 200 answer from this relay's admin server; None (said on stderr) else."""
    try:
        status, body = _admin_get(config, path, timeout)
    except OSError as exc:
        print(f"relay: {command}: {config.admin.listen}: {exc}", file=sys.stderr)
        return None
    if status != 200:
        print(f"relay: {command}: {config.admin.listen}{path} answered {status}", file=sys.stderr)
        return None
    return body


def cmd_probe(path: str, timeout: float = 2.0) -> int:
    body = _admin_fetch(load_config(path), "probe", "/healthz", timeout)
    return EXIT_INTERNAL if body is None else EXIT_OK


def cmd_status(path: str, timeout: float = 5.0) -> int:
    body = _admin_fetch(load_config(path), "status", "/status", timeout)
    if body is None:
        return EXIT_INTERNAL
    print(format_status(json.loads(body)))
    return EXIT_OK


def format_status(status: dict[str, Any]) -> str:
    """/status as a table for a person at a terminal."""
    lines = [f"relay {status.get('version', '?')}  up {status.get('uptime_seconds', 0):.0f}s  "
             f"sessions {status.get('sessions', 0)}" + ("  STOPPING" if status.get("stopping") else "")]
    for lst in status.get("listeners", []):
        tier = lst.get("active_tier")
        lines.append("")
        lines.append(f"listener {lst['name']}  {lst.get('listen', '')}  serving tier "
                     f"{'none' if tier == -1 else tier}  failback {lst.get('failback', '')}  "
                     f"sessions {lst.get('sessions', 0)}")
        rows = [("BACKEND", "TIER", "ADDRESS", "STATE", "ADMIN", "SESSIONS", "CHECKED", "LAST ERROR")]
        for b in lst.get("backends", []):
            ago = b.get("last_check_seconds_ago")
            rows.append((b["name"], str(b["tier"]), b["address"],
                         b["state"] + ("" if b.get("available") or b["state"] == "down"
                                       or b["admin_state"] != "ready" else " (suspect)"),
                         b["admin_state"], str(b["sessions"]),
                         "never" if ago is None else f"{ago:.1f}s ago", b.get("last_error") or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="A resilient TCP proxy.")
    parser.add_argument("--version", action="version", version=f"relay {__version__} ({flavour()})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run in the foreground; logs to stderr"),
                       ("check", "validate the configuration and print a summary"),
                       ("probe", "exit 0 when this relay's /healthz answers 200"),
                       ("status", "show this relay's /status as a table")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("-c", "--config", metavar="FILE",
                         help=f"configuration file (default: $RELAY_CONFIG, then {DEFAULT_CONFIG})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = _config_path(args.config)
    commands = {"run": cmd_run, "check": cmd_check, "probe": cmd_probe, "status": cmd_status}
    try:
        return commands[args.command](path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `relay check | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
