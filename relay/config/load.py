"""TOML text -> a validated Config (product.md section 3), with every problem reported at once.

Pure: no DNS and no file-existence checks; those belong to `relay run`/`relay check`.
Defaults come from the dataclasses in model.py.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import replace
from typing import Any, get_args

# pyproject allows no Python older than 3.11 today; the fallback keeps the loader portable.
if sys.version_info >= (3, 11):  # noqa: UP036
    import tomllib
else:  # pragma: no cover - Python 3.10 and older
    import tomli as tomllib

from relay.config import converters as to
from relay.config.authority import AUTHORITY_KEYS, check_backends, read_authority
from relay.config.authority import role_url as authority_role_url
from relay.config.locate import locate_lines, syntax_problem
from relay.config.model import (
    AcceptProxy,
    Address,
    AdminConfig,
    AuthorityConfig,
    BackendConfig,
    Balance,
    Config,
    Discover,
    Failback,
    HealthConfig,
    HealthKind,
    InitialState,
    ListenerConfig,
    LogFormat,
    LogLevel,
    ProxyProtocol,
    RetryConfig,
    RuntimeConfig,
    SpliceMode,
)
from relay.config.table import Problems, Table
from relay.config.values import format_duration, show_value
from relay.errors import ConfigError, ConfigProblem

_TOP_KEYS = ("admin", "runtime", "listener")
_ADMIN_KEYS = ("listen", "token_file")
_RUNTIME_KEYS = (
    "workers",
    "max_connections",
    "splice",
    "log_format",
    "log_level",
    "shutdown_grace",
    "backend_histograms",
)
_LISTENER_KEYS = (
    "name",
    "listen",
    "balance",
    "connect_timeout",
    "idle_timeout",
    "max_connections",
    "close_on_down",
    "failback",
    "failback_delay",
    "drain_backup_after",
    "proxy_protocol",
    "accept_proxy",
    "trusted_proxies",
    "allow",
    "deny",
    "max_connections_per_source",
    "access_log",
    "retry",
    "health",
    "backend",
    "authority",  # issue 15
)
_RETRY_KEYS = ("attempts", "deadline", "backoff_initial", "backoff_max", "multiplier", "jitter",
               "hedge")
_HEALTH_KEYS = (
    "kind",
    "interval",
    "timeout",
    "rise",
    "fall",
    "down_backoff_max",
    "send",
    "expect",
    "path",
    "initial",
    "send_proxy",
)
_BACKEND_KEYS = ("name", "address", "tier", "weight", "role_url", "discover", "resolve_interval")

_BALANCES: tuple[Balance, ...] = get_args(Balance)
_HEALTH_KINDS: tuple[HealthKind, ...] = get_args(HealthKind)
_INITIAL_STATES: tuple[InitialState, ...] = get_args(InitialState)
_FAILBACKS: tuple[Failback, ...] = get_args(Failback)
_PROXY_PROTOCOLS: tuple[ProxyProtocol, ...] = get_args(ProxyProtocol)
_ACCEPT_PROXY: tuple[AcceptProxy, ...] = get_args(AcceptProxy)
_SPLICE_MODES: tuple[SpliceMode, ...] = get_args(SpliceMode)
_LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
_LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
_DISCOVER: tuple[Discover, ...] = get_args(Discover)


def load_config(path: str) -> Config:
    """Read and validate the file at `path`; raise ConfigError listing every problem."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(path, [ConfigProblem("", f"cannot read the file: {reason}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, [ConfigProblem("", "the file is not valid UTF-8", line)]) from None
    return parse_config(text, source=path)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate TOML `text`; `source` names it in messages and becomes Config.source."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [syntax_problem(str(exc), text)]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(source, [ConfigProblem("", "arrays or tables nested too deeply")]) \
            from None
    checker = Problems(locate_lines(text))
    config = _read_config(checker, data, source)
    if checker.problems or config is None:
        raise ConfigError(source, checker.sorted_problems())
    return replace(config, text=text)


def line_of(text: str, path: str) -> int | None:
    """The line of key `path` (or of its nearest enclosing table) in TOML `text`: for
    problems found after parsing (an address that does not resolve), placed like the rest."""
    return Problems(locate_lines(text))._line_of(path)


# --- reading the parsed tables ----------------------------------------------------------

def _read_config(checker: Problems, data: dict[str, Any], source: str) -> Config | None:
    top = Table(checker, data, "", _TOP_KEYS)
    admin_table = top.table("admin", _ADMIN_KEYS)
    admin = _read_admin(admin_table)
    runtime = _read_runtime(top.table("runtime", _RUNTIME_KEYS))
    listeners = _read_listeners(top, admin_table, admin)
    if listeners and runtime.workers != 1 and any(lc.authority for lc in listeners):  # issue 15
        top.add("runtime.workers", "must be 1 with a [listener.authority] (for now)")
    if listeners and runtime.workers != 1 and any(  # issue 15: only one process resolves
            bc.discover == "dns" for lc in listeners for bc in lc.backends):
        top.add("runtime.workers", 'must be 1 with a backend that has discover = "dns" '
                "(workers cannot learn discovered backends yet)")
    if not admin_table.ok("listen") or listeners is None:
        return None
    return Config(listeners=tuple(listeners), admin=admin, runtime=runtime, source=source)


def _read_admin(t: Table) -> AdminConfig:
    default = AdminConfig()
    return AdminConfig(
        listen=t.get("listen", to.listen_address, default.listen),
        token_file=t.get("token_file", to.non_empty_string, default.token_file),
    )


def _read_runtime(t: Table) -> RuntimeConfig:
    default = RuntimeConfig()
    return RuntimeConfig(
        workers=t.get("workers", to.workers, default.workers),
        max_connections=t.get("max_connections", to.integer(1), default.max_connections),
        splice=t.get("splice", to.choice(_SPLICE_MODES), default.splice),
        log_format=t.get("log_format", to.choice(_LOG_FORMATS), default.log_format),
        log_level=t.get("log_level", to.choice(_LOG_LEVELS), default.log_level),
        shutdown_grace=t.get("shutdown_grace", to.duration(), default.shutdown_grace),
        backend_histograms=t.get("backend_histograms", to.boolean, default.backend_histograms),
    )


def _read_listeners(
    top: Table, admin_table: Table, admin: AdminConfig
) -> list[ListenerConfig] | None:
    tables = top.tables("listener", _LISTENER_KEYS)
    if tables is None:
        return None
    if not tables:
        top.add("listener", "at least one [[listener]] is required")
        return None
    listeners: list[ListenerConfig] = []
    first_with_name: dict[str, str] = {}
    # Sockets already claimed, for the duplicate check: (key path, address).
    taken: list[tuple[str, Address]] = []
    if admin_table.ok("listen"):
        admin_path = "admin.listen" if admin_table.has("listen") else "admin.listen (default)"
        taken.append((admin_path, admin.listen))
    for t in tables:
        listener = _read_listener(t)
        _check_unique_name(t, first_with_name)
        if t.has("listen") and t.ok("listen"):
            _check_listen_conflict(t, to.listen_address(t.data["listen"]), taken)
        if listener is not None:
            listeners.append(listener)
    return listeners if len(listeners) == len(tables) else None


def _read_listener(t: Table) -> ListenerConfig | None:
    name = t.require("name", to.name)
    listen = t.require("listen", to.listen_address)
    retry = _read_retry(t.table("retry", _RETRY_KEYS))
    health_table = t.table("health", _HEALTH_KEYS)
    health = _read_health(health_table)
    # issue 15: [listener.authority]; with Sentinel, backends may come from it alone
    authority = read_authority(t.table("authority", AUTHORITY_KEYS))
    backends = _read_backends(t, authority)
    d = ListenerConfig(name="", listen=Address("", 0), backends=())  # the defaults
    settings = ListenerConfig(
        name=name or "",
        listen=listen or d.listen,
        backends=tuple(backends or ()),
        balance=t.get("balance", to.choice(_BALANCES), d.balance),
        connect_timeout=t.get("connect_timeout", to.duration(positive=True), d.connect_timeout),
        idle_timeout=t.get("idle_timeout", to.duration_or_off(positive=True), d.idle_timeout),
        max_connections=t.get("max_connections", to.integer(1), d.max_connections),
        close_on_down=t.get("close_on_down", to.boolean, d.close_on_down),
        failback=t.get("failback", to.choice(_FAILBACKS), d.failback),
        failback_delay=t.get("failback_delay", to.duration(), d.failback_delay),
        drain_backup_after=t.get("drain_backup_after", to.duration_or_off(), d.drain_backup_after),
        proxy_protocol=t.get("proxy_protocol", to.choice(_PROXY_PROTOCOLS), d.proxy_protocol),
        accept_proxy=t.get("accept_proxy", to.choice(_ACCEPT_PROXY), d.accept_proxy),
        trusted_proxies=t.get("trusted_proxies", to.networks, d.trusted_proxies),
        allow=t.get("allow", to.networks, d.allow),
        deny=t.get("deny", to.networks, d.deny),
        max_connections_per_source=t.get("max_connections_per_source", to.integer(0),
                                         d.max_connections_per_source),
        access_log=t.get("access_log", to.boolean, d.access_log),
        retry=retry,
        health=health,
        authority=authority,
    )
    if health.send_proxy and t.ok("proxy_protocol") and settings.proxy_protocol == "off":
        health_table.add("send_proxy", 'needs proxy_protocol = "v1" or "v2" on the listener '
                         "(the header checks send is the one sessions send)")
    if t.ok("accept_proxy") and t.ok("trusted_proxies"):
        if settings.accept_proxy != "off" and not settings.trusted_proxies:
            t.add("trusted_proxies", f'is required when accept_proxy = "{settings.accept_proxy}" '
                  "(whose PROXY headers may be believed?)")
        elif settings.accept_proxy == "off" and settings.trusted_proxies:
            t.add("trusted_proxies", 'only used when accept_proxy is not "off"')
    if name is None or listen is None or backends is None:
        return None
    return settings


def _read_retry(t: Table) -> RetryConfig:
    d = RetryConfig()
    backoff_initial = t.get("backoff_initial", to.duration(), d.backoff_initial)
    backoff_max = t.get("backoff_max", to.duration(), d.backoff_max)
    _check_not_below(t, "backoff_initial", backoff_initial, "backoff_max", backoff_max)
    return RetryConfig(
        attempts=t.get("attempts", to.integer(1), d.attempts),
        deadline=t.get("deadline", to.duration(positive=True), d.deadline),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        multiplier=t.get("multiplier", to.number(1.0), d.multiplier),
        jitter=t.get("jitter", to.number(0.0, 1.0), d.jitter),
        hedge=t.get("hedge", to.hedge, d.hedge),
    )


def _read_health(t: Table) -> HealthConfig:
    d = HealthConfig()
    kind = t.get("kind", to.choice(_HEALTH_KINDS), d.kind)
    interval = t.get("interval", to.duration(positive=True), d.interval)
    down_backoff_max = t.get("down_backoff_max", to.duration(), d.down_backoff_max)
    _check_not_below(t, "interval", interval, "down_backoff_max", down_backoff_max)
    send = t.get("send", to.utf8_bytes, d.send)
    expect = t.get("expect", to.utf8_bytes, d.expect)
    path = t.get("path", to.http_path, d.path)
    if t.ok("kind"):  # with an unknown kind, which keys belong to it is unknown too
        for key, used_by in (("send", "send_expect"), ("expect", "send_expect"), ("path", "http")):
            if t.has(key) and t.ok(key) and kind != used_by:
                t.add(key, f'only used when kind = "{used_by}" (kind is "{kind}")')
        if kind == "send_expect" and t.ok("expect"):
            if expect is None:
                t.add("expect", 'is required when kind = "send_expect"')
            elif not expect:
                t.add("expect", 'must not be empty when kind = "send_expect"')
    return HealthConfig(
        kind=kind,
        interval=interval,
        timeout=t.get("timeout", to.duration(positive=True), d.timeout),
        rise=t.get("rise", to.integer(1), d.rise),
        fall=t.get("fall", to.integer(1), d.fall),
        down_backoff_max=down_backoff_max,
        send=send,
        expect=expect,
        path=path,
        send_proxy=t.get("send_proxy", to.boolean, d.send_proxy),
        initial=t.get("initial", to.choice(_INITIAL_STATES), d.initial),
    )


def _read_backends(listener: Table,
                   authority: AuthorityConfig | None = None) -> list[BackendConfig] | None:
    tables = listener.tables("backend", _BACKEND_KEYS)
    if tables is None:
        return None
    if not tables and (authority is None or authority.kind != "redis_sentinel"):
        listener.add("backend", "at least one [[listener.backend]] is required")
        return None
    backends: list[BackendConfig] = []
    first_with_name: dict[str, str] = {}
    read: list[tuple[Table, BackendConfig]] = []
    for t in tables:
        backend = _read_backend(t)
        _check_unique_name(t, first_with_name)
        if backend is not None:
            backends.append(backend)
            read.append((t, backend))
    if authority is not None or not listener.has("authority"):
        check_backends(authority, read)  # issue 15: role_url <-> kind = "http"
    if listener.has("authority"):  # issue 15: the authority names the backends, not DNS
        for t, backend in read:
            if backend.discover == "dns":
                t.add("discover", 'cannot be "dns" in a listener with a [listener.authority]')
    return backends if len(backends) == len(tables) else None


def _read_backend(t: Table) -> BackendConfig | None:
    name = t.require("name", to.name)
    address = t.require("address", to.backend_address)
    d = BackendConfig(name="", address=Address("", 0))
    tier = t.get("tier", to.integer(0), d.tier)
    weight = t.get("weight", to.integer(1), d.weight)
    role_url = t.get("role_url", authority_role_url, None)
    discover = t.get("discover", to.choice(_DISCOVER), d.discover)
    resolve_interval = t.get("resolve_interval", to.duration(positive=True), d.resolve_interval)
    if t.ok("discover"):
        if t.has("resolve_interval") and discover != "dns":
            t.add("resolve_interval", 'only used when discover = "dns"')
        if discover == "dns" and address is not None and is_ip_literal(address.host):
            t.add("discover", f'"dns" needs a host name, got the IP address {address.host!r}')
    if name is None or address is None:
        return None
    return BackendConfig(name=name, address=address, tier=tier, weight=weight, role_url=role_url,
                         discover=discover, resolve_interval=resolve_interval)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_unique_name(t: Table, first_with_name: dict[str, str]) -> None:
    name = t.data.get("name")
    if not isinstance(name, str) or not t.ok("name"):
        return
    if name in first_with_name:
        t.add("name", f"duplicate name {show_value(name)}; {first_with_name[name]} has it too")
    else:
        first_with_name[name] = t.path


def _check_not_below(t: Table, low_key: str, low: float, high_key: str, high: float) -> None:
    """`high_key` must be >= `low_key`; blame the key the user wrote, not a default."""
    if high >= low or not t.ok(low_key, high_key):
        return
    if t.has(high_key):
        default = "" if t.has(low_key) else ", the default"
        t.add(
            high_key,
            f"must be >= {low_key} ({format_duration(low)}{default}), "
            f"got {show_value(t.data[high_key])}",
        )
    else:
        t.add(
            low_key,
            f"must be <= {high_key} ({format_duration(high)}, the default), "
            f"got {show_value(t.data[low_key])}",
        )


def _check_listen_conflict(t: Table, listen: Address, taken: list[tuple[str, Address]]) -> None:
    for other_path, other in taken:
        if _same_socket(listen, other):
            t.add("listen", f'"{listen}" is already used by {other_path}')
            return
        if _overlapping(listen, other):
            t.add(
                "listen",
                f'"{listen}" overlaps {other_path} ("{other}"): '
                "a wildcard address takes the port on every interface",
            )
            return
    taken.append((t.key_path("listen"), listen))


def _same_socket(a: Address, b: Address) -> bool:
    # Port 0 asks for a fresh ephemeral port each time: never a conflict.
    return a.port == b.port != 0 and _normal_host(a.host) == _normal_host(b.host)


def _overlapping(a: Address, b: Address) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    return _covers(_normal_host(a.host), b.host) or _covers(_normal_host(b.host), a.host)


def _covers(wildcard: str, host: str) -> bool:
    # "::" is dual-stack on Linux by default; "0.0.0.0" covers every IPv4 address.
    return wildcard == "::" or (wildcard == "0.0.0.0" and ":" not in host)


def _normal_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


