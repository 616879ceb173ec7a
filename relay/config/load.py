"""TOML text -> a validated Config (product.md section 3), with every problem reported at once.

Pure: no DNS and no file-existence checks; those belong to `relay run`/`relay check`.
Defaults come from the dataclasses in model.py.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, get_args

# pyproject allows no Python older than 3.11 today; the fallback keeps the loader portable.
if sys.version_info >= (3, 11):  # noqa: UP036
    import tomllib
else:  # pragma: no cover - Python 3.10 and older
    import tomli as tomllib

from relay.config.model import (
    HEDGE_AUTO,
    AcceptProxy,
    Address,
    AdminConfig,
    BackendConfig,
    Balance,
    Config,
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
from relay.config.values import format_duration, parse_address, parse_duration, show_value
from relay.core.access import parse_network
from relay.errors import ConfigError, ConfigProblem

T = TypeVar("T")
S = TypeVar("S", bound=str)

_TOP_KEYS = ("admin", "runtime", "listener")
_ADMIN_KEYS = ("listen", "token_file")
_RUNTIME_KEYS = (
    "workers",
    "max_connections",
    "splice",
    "log_format",
    "log_level",
    "shutdown_grace",
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
_BACKEND_KEYS = ("name", "address", "tier", "weight")

_BALANCES: tuple[Balance, ...] = get_args(Balance)
_HEALTH_KINDS: tuple[HealthKind, ...] = get_args(HealthKind)
_INITIAL_STATES: tuple[InitialState, ...] = get_args(InitialState)
_FAILBACKS: tuple[Failback, ...] = get_args(Failback)
_PROXY_PROTOCOLS: tuple[ProxyProtocol, ...] = get_args(ProxyProtocol)
_ACCEPT_PROXY: tuple[AcceptProxy, ...] = get_args(AcceptProxy)
_SPLICE_MODES: tuple[SpliceMode, ...] = get_args(SpliceMode)
_LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
_LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)

# Names appear in admin URLs and metric labels.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
        raise ConfigError(source, [_syntax_problem(str(exc), text)]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(source, [ConfigProblem("", "arrays or tables nested too deeply")]) \
            from None
    checker = _Checker(_locate_lines(text))
    config = _read_config(checker, data, source)
    if checker.problems or config is None:
        raise ConfigError(source, checker.sorted_problems())
    return replace(config, text=text)


def line_of(text: str, path: str) -> int | None:
    """The line of key `path` (or of its nearest enclosing table) in TOML `text`: for
    problems found after parsing (an address that does not resolve), placed like the rest."""
    return _Checker(_locate_lines(text))._line_of(path)


# --- reading the parsed tables ----------------------------------------------------------


class _Checker:
    """Collects problems, each placed on the line of its key (or of the nearest enclosing table)."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.problems: list[ConfigProblem] = []
        self._lines = lines
        self._failed: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self._failed.add(path)
        self.problems.append(ConfigProblem(path, message, self._line_of(path)))

    def failed(self, path: str) -> bool:
        return path in self._failed

    def sorted_problems(self) -> list[ConfigProblem]:
        return sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))

    def _line_of(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = _parent_path(path)
        return None


def _parent_path(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path[: max(path.rfind("."), 0)]


class _Table:
    """One TOML table being read: knows its key path and rejects keys it does not expect."""

    def __init__(
        self, checker: _Checker, data: dict[str, Any], path: str, keys: tuple[str, ...]
    ) -> None:
        self.checker = checker
        self.data = data
        self.path = path
        for key in data:
            if key not in keys:
                checker.add(self.key_path(key), _unknown_key_message(key, keys))

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def ok(self, *keys: str) -> bool:
        """True when none of `keys` had a bad value (absent keys are fine: they take defaults)."""
        return not any(self.checker.failed(self.key_path(key)) for key in keys)

    def add(self, key: str, message: str) -> None:
        self.checker.add(self.key_path(key), message)

    def get(self, key: str, convert: Callable[[object], T], default: T) -> T:
        if key not in self.data:
            return default
        try:
            return convert(self.data[key])
        except ValueError as exc:
            self.add(key, str(exc))
            return default

    def require(self, key: str, convert: Callable[[object], T]) -> T | None:
        if key not in self.data:
            self.add(key, "is required")
            return None
        try:
            return convert(self.data[key])
        except ValueError as exc:
            self.add(key, str(exc))
            return None

    def table(self, key: str, keys: tuple[str, ...]) -> _Table:
        """The sub-table `key`; empty (all defaults) when absent or not a table."""
        path = self.key_path(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            header = _header(path)
            self.add(key, f"must be a table ([{header}]), got {show_value(value)}")
            value = {}
        return _Table(self.checker, value, path, keys)

    def tables(self, key: str, keys: tuple[str, ...]) -> list[_Table] | None:
        """The array of tables `key`: [] when absent, None when it is not an array of tables."""
        path = self.key_path(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            header = _header(path)
            self.add(key, f"must be an array of tables ([[{header}]]), got {show_value(value)}")
            return None
        result: list[_Table] = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict):
                result.append(_Table(self.checker, item, item_path, keys))
            else:
                self.checker.add(item_path, f"must be a table, got {show_value(item)}")
        return result if len(result) == len(value) else None


def _header(path: str) -> str:
    """The TOML header of a table path: "listener[0].health" -> "listener.health"."""
    return re.sub(r"\[\d+\]", "", path)


def _unknown_key_message(key: str, keys: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return "unknown key; expected one of: " + ", ".join(keys)


def _read_config(checker: _Checker, data: dict[str, Any], source: str) -> Config | None:
    top = _Table(checker, data, "", _TOP_KEYS)
    admin_table = top.table("admin", _ADMIN_KEYS)
    admin = _read_admin(admin_table)
    runtime = _read_runtime(top.table("runtime", _RUNTIME_KEYS))
    listeners = _read_listeners(top, admin_table, admin)
    if not admin_table.ok("listen") or listeners is None:
        return None
    return Config(listeners=tuple(listeners), admin=admin, runtime=runtime, source=source)


def _read_admin(t: _Table) -> AdminConfig:
    default = AdminConfig()
    return AdminConfig(
        listen=t.get("listen", _listen_address, default.listen),
        token_file=t.get("token_file", _non_empty_string, default.token_file),
    )


def _read_runtime(t: _Table) -> RuntimeConfig:
    default = RuntimeConfig()
    return RuntimeConfig(
        workers=t.get("workers", _workers, default.workers),
        max_connections=t.get("max_connections", _integer(1), default.max_connections),
        splice=t.get("splice", _choice(_SPLICE_MODES), default.splice),
        log_format=t.get("log_format", _choice(_LOG_FORMATS), default.log_format),
        log_level=t.get("log_level", _choice(_LOG_LEVELS), default.log_level),
        shutdown_grace=t.get("shutdown_grace", _duration(), default.shutdown_grace),
    )


def _read_listeners(
    top: _Table, admin_table: _Table, admin: AdminConfig
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
            _check_listen_conflict(t, _listen_address(t.data["listen"]), taken)
        if listener is not None:
            listeners.append(listener)
    return listeners if len(listeners) == len(tables) else None


def _read_listener(t: _Table) -> ListenerConfig | None:
    name = t.require("name", _name)
    listen = t.require("listen", _listen_address)
    retry = _read_retry(t.table("retry", _RETRY_KEYS))
    health_table = t.table("health", _HEALTH_KEYS)
    health = _read_health(health_table)
    backends = _read_backends(t)
    d = ListenerConfig(name="", listen=Address("", 0), backends=())  # the defaults
    settings = ListenerConfig(
        name=name or "",
        listen=listen or d.listen,
        backends=tuple(backends or ()),
        balance=t.get("balance", _choice(_BALANCES), d.balance),
        connect_timeout=t.get("connect_timeout", _duration(positive=True), d.connect_timeout),
        idle_timeout=t.get("idle_timeout", _duration_or_off(positive=True), d.idle_timeout),
        max_connections=t.get("max_connections", _integer(1), d.max_connections),
        close_on_down=t.get("close_on_down", _boolean, d.close_on_down),
        failback=t.get("failback", _choice(_FAILBACKS), d.failback),
        failback_delay=t.get("failback_delay", _duration(), d.failback_delay),
        drain_backup_after=t.get("drain_backup_after", _duration_or_off(), d.drain_backup_after),
        proxy_protocol=t.get("proxy_protocol", _choice(_PROXY_PROTOCOLS), d.proxy_protocol),
        accept_proxy=t.get("accept_proxy", _choice(_ACCEPT_PROXY), d.accept_proxy),
        trusted_proxies=t.get("trusted_proxies", _networks, d.trusted_proxies),
        allow=t.get("allow", _networks, d.allow),
        deny=t.get("deny", _networks, d.deny),
        max_connections_per_source=t.get("max_connections_per_source", _integer(0),
                                         d.max_connections_per_source),
        access_log=t.get("access_log", _boolean, d.access_log),
        retry=retry,
        health=health,
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


def _read_retry(t: _Table) -> RetryConfig:
    d = RetryConfig()
    backoff_initial = t.get("backoff_initial", _duration(), d.backoff_initial)
    backoff_max = t.get("backoff_max", _duration(), d.backoff_max)
    _check_not_below(t, "backoff_initial", backoff_initial, "backoff_max", backoff_max)
    return RetryConfig(
        attempts=t.get("attempts", _integer(1), d.attempts),
        deadline=t.get("deadline", _duration(positive=True), d.deadline),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        multiplier=t.get("multiplier", _number(1.0), d.multiplier),
        jitter=t.get("jitter", _number(0.0, 1.0), d.jitter),
        hedge=t.get("hedge", _hedge, d.hedge),
    )


def _read_health(t: _Table) -> HealthConfig:
    d = HealthConfig()
    kind = t.get("kind", _choice(_HEALTH_KINDS), d.kind)
    interval = t.get("interval", _duration(positive=True), d.interval)
    down_backoff_max = t.get("down_backoff_max", _duration(), d.down_backoff_max)
    _check_not_below(t, "interval", interval, "down_backoff_max", down_backoff_max)
    send = t.get("send", _utf8_bytes, d.send)
    expect = t.get("expect", _utf8_bytes, d.expect)
    path = t.get("path", _http_path, d.path)
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
        timeout=t.get("timeout", _duration(positive=True), d.timeout),
        rise=t.get("rise", _integer(1), d.rise),
        fall=t.get("fall", _integer(1), d.fall),
        down_backoff_max=down_backoff_max,
        send=send,
        expect=expect,
        path=path,
        send_proxy=t.get("send_proxy", _boolean, d.send_proxy),
        initial=t.get("initial", _choice(_INITIAL_STATES), d.initial),
    )


def _read_backends(listener: _Table) -> list[BackendConfig] | None:
    tables = listener.tables("backend", _BACKEND_KEYS)
    if tables is None:
        return None
    if not tables:
        listener.add("backend", "at least one [[listener.backend]] is required")
        return None
    backends: list[BackendConfig] = []
    first_with_name: dict[str, str] = {}
    for t in tables:
        backend = _read_backend(t)
        _check_unique_name(t, first_with_name)
        if backend is not None:
            backends.append(backend)
    return backends if len(backends) == len(tables) else None


def _read_backend(t: _Table) -> BackendConfig | None:
    name = t.require("name", _name)
    address = t.require("address", _backend_address)
    d = BackendConfig(name="", address=Address("", 0))
    tier = t.get("tier", _integer(0), d.tier)
    weight = t.get("weight", _integer(1), d.weight)
    if name is None or address is None:
        return None
    return BackendConfig(name=name, address=address, tier=tier, weight=weight)


def _check_unique_name(t: _Table, first_with_name: dict[str, str]) -> None:
    name = t.data.get("name")
    if not isinstance(name, str) or not t.ok("name"):
        return
    if name in first_with_name:
        t.add("name", f"duplicate name {show_value(name)}; {first_with_name[name]} has it too")
    else:
        first_with_name[name] = t.path


def _check_not_below(t: _Table, low_key: str, low: float, high_key: str, high: float) -> None:
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


def _check_listen_conflict(t: _Table, listen: Address, taken: list[tuple[str, Address]]) -> None:
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


# --- value converters: each returns the typed value or raises ValueError(message) -------


def _integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise ValueError(f"must be an integer >= {minimum}, got {show_value(value)}")

    return convert


def _number(minimum: float, maximum: float | None = None) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            top = math.inf if maximum is None else maximum
            if math.isfinite(number) and minimum <= number <= top:
                return number
        if maximum is None:
            raise ValueError(f"must be a number >= {minimum}, got {show_value(value)}")
        raise ValueError(
            f"must be a number from {minimum:g} to {maximum:g}, got {show_value(value)}"
        )

    return convert


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {show_value(value)}")


def _choice(options: tuple[S, ...]) -> Callable[[object], S]:
    def convert(value: object) -> S:
        for option in options:
            if value == option and isinstance(value, str):
                return option
        listed = ", ".join(f'"{option}"' for option in options)
        message = f"must be one of {listed}, got {show_value(value)}"
        if isinstance(value, str):
            close = difflib.get_close_matches(value, options, n=1)
            if close:
                message += f' (did you mean "{close[0]}"?)'
        raise ValueError(message)

    return convert


def _duration(*, positive: bool = False) -> Callable[[object], float]:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError(f"must be a duration > 0, got {show_value(value)}")
        return seconds

    return convert


def _hedge(value: object) -> float | None:
    if value == "auto":
        return HEDGE_AUTO
    try:
        return _duration_or_off(positive=True)(value)
    except ValueError:
        raise ValueError('must be "auto", "off" or a duration like "20ms", '
                         f"got {show_value(value)}") from None


def _duration_or_off(*, positive: bool = False) -> Callable[[object], float | None]:
    parse = _duration(positive=positive)

    def convert(value: object) -> float | None:
        if value == "off":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return parse(value)
        try:
            return parse(value)
        except ValueError:
            raise ValueError(
                'must be "off" or a duration like "250ms", "2s", "5m" or a number of seconds, '
                f"got {show_value(value)}"
            ) from None

    return convert


MAX_WORKERS = 256


def _workers(value: object) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    raise ValueError(f'must be an integer from 1 to {MAX_WORKERS} or "auto", '
                     f"got {show_value(value)}")


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"must be a string, got {show_value(value)}")


def _non_empty_string(value: object) -> str:
    if _string(value):
        return str(value)
    raise ValueError("must not be empty")


def _name(value: object) -> str:
    name = _non_empty_string(value)
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            'must start with a letter or digit and hold only letters, digits, "_", "." and "-" '
            f"(names are used in URLs and metric labels), got {show_value(name)}"
        )
    return name


def _listen_address(value: object) -> Address:
    return parse_address(value, allow_port_zero=True)


def _backend_address(value: object) -> Address:
    return parse_address(value, allow_port_zero=False)


def _networks(value: object) -> tuple[str, ...]:
    """A list of CIDRs (or single addresses), kept as normalised text."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of CIDR strings, got {show_value(value)}")
    networks: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must be a list of CIDR strings, got {show_value(item)} in it")
        try:
            networks.append(str(parse_network(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR such as \"10.0.0.0/8\" or \"::1/128\" "
                             "(host bits must be zero)") from None
    return tuple(networks)


def _utf8_bytes(value: object) -> bytes:
    return _string(value).encode("utf-8")


def _http_path(value: object) -> str:
    path = _string(value)
    if not path.startswith("/"):
        raise ValueError(f'must start with "/", got {show_value(path)}')
    if any(not "!" <= char <= "~" for char in path):
        raise ValueError(
            "must be printable ASCII without spaces (percent-encode other characters), "
            f"got {show_value(path)}"
        )
    return path


# --- locating keys in the source text (tomllib does not report lines) --------------------

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_SYNTAX_LINE_RE = re.compile(r"\(at line (\d+), column \d+\)")


def _syntax_problem(message: str, text: str) -> ConfigProblem:
    match = _SYNTAX_LINE_RE.search(message)
    if match:
        line: int | None = int(match.group(1))
    elif "end of document" in message:
        line = text.rstrip("\n").count("\n") + 1
    else:
        line = None
    return ConfigProblem("", f"invalid TOML: {message}", line)


def _locate_lines(text: str) -> dict[str, int]:
    """Map key paths ("listener[1].health.rise") and table paths to their line in `text`.

    A scanner, not a parser: the text is already known to be valid TOML. It follows
    headers, counts [[array]] tables, and skips the inside of multi-line strings and
    arrays so that a line in them is not taken for a header or a key.
    """
    lines: dict[str, int] = {}
    counts: dict[tuple[str, ...], int] = {}  # array-of-tables header -> tables seen so far
    table_path = ""
    open_string: str | None = None  # closing delimiter of a multi-line string we are in
    depth = 0  # brackets and braces still open
    for lineno, line in enumerate(text.split("\n"), start=1):
        if open_string is not None or depth > 0:
            open_string, depth = _scan_value(line, 0, open_string, depth)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            is_array = stripped.startswith("[[")
            parsed = _parse_key(stripped, 2 if is_array else 1)
            if parsed is None:
                continue
            key = tuple(parsed[0])
            if is_array:
                counts[key] = counts.get(key, 0) + 1
                for nested in [k for k in counts if len(k) > len(key) and k[: len(key)] == key]:
                    del counts[nested]  # a new [[listener]] restarts its [[listener.backend]]s
            table_path = _table_path(key, counts)
            lines.setdefault(table_path, lineno)
            continue
        parsed = _parse_key(stripped, 0)
        if parsed is None:
            continue
        parts, end = parsed
        if not stripped.startswith("=", end):
            continue
        path = table_path
        for part in parts:  # a dotted key also places the tables it opens
            path = f"{path}.{part}" if path else part
            lines.setdefault(path, lineno)
        open_string, depth = _scan_value(stripped, end + 1, None, 0)
    return lines


def _table_path(key: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> str:
    parts: list[str] = []
    for end in range(1, len(key) + 1):
        name = key[end - 1]
        count = counts.get(key[:end])
        parts.append(f"{name}[{count - 1}]" if count else name)
    return ".".join(parts)


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """A (dotted) key starting at `pos`: its parts and the position after it."""
    parts: list[str] = []
    while True:
        pos = _skip_blanks(text, pos)
        if text.startswith(('"', "'"), pos):
            quote = text[pos]
            end = _find_closing(text, pos + 1, quote)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY_RE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        pos = _skip_blanks(text, pos)
        if not text.startswith(".", pos):
            return parts, pos
        pos += 1


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _scan_value(text: str, pos: int, open_string: str | None, depth: int) -> tuple[str | None, int]:
    """Scan a value (or its continuation line); return the open multi-line string and depth."""
    while pos < len(text):
        if open_string is not None:
            end = _find_closing(text, pos, open_string)
            if end < 0:
                return open_string, depth
            pos = end + len(open_string)
            open_string = None
            continue
        char = text[pos]
        if char == "#":
            break
        if char in "\"'":
            if text.startswith(char * 3, pos):
                open_string = char * 3
                pos += 3
                continue
            end = _find_closing(text, pos + 1, char)
            pos = end + 1 if end >= 0 else len(text)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        pos += 1
    return open_string, depth


def _find_closing(text: str, pos: int, delimiter: str) -> int:
    escapes = delimiter.startswith('"')  # basic strings have backslash escapes, literal ones not
    while pos < len(text):
        if escapes and text[pos] == "\\":
            pos += 2
            continue
        if text.startswith(delimiter, pos):
            return pos
        pos += 1
    return -1
