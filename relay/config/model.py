"""The configuration as typed, immutable values (product.md section 3).

Durations are float seconds; "off" is None. Addresses are kept unresolved here
(host, port); relay.net.resolve turns them into socket addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

Balance = Literal["first", "round_robin", "least_conn"]
HealthKind = Literal["tcp", "send_expect", "http", "none"]
Failback = Literal["auto", "manual"]
ProxyProtocol = Literal["off", "v1", "v2"]
AcceptProxy = Literal["off", "v1", "v2", "any"]
SpliceMode = Literal["auto", "off"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
InitialState = Literal["up", "down"]
AuthorityKind = Literal["redis_sentinel", "http"]  # issue 15: [listener.authority]
ReplicaUse = Literal["backup", "exclude"]
Discover = Literal["off", "dns"]  # issue 15: a backend per A/AAAA record of its name


@dataclass(frozen=True)
class Address:
    host: str  # hostname, IPv4 literal or IPv6 literal (without brackets)
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AdminConfig:
    listen: Address = field(default_factory=lambda: Address("127.0.0.1", 9100))
    token_file: str | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    workers: int | None = 1  # None = "auto" (CPU count)
    max_connections: int = 20000
    splice: SpliceMode = "auto"
    log_format: LogFormat = "text"
    log_level: LogLevel = "info"
    shutdown_grace: float = 30.0
    backend_histograms: bool = False  # per-backend connect-time histograms on /metrics


HEDGE_AUTO: Final = -1.0  # [listener.retry] hedge = "auto"


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = 4
    deadline: float = 5.0
    backoff_initial: float = 0.05
    backoff_max: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2
    hedge: float | None = HEDGE_AUTO  # seconds; HEDGE_AUTO = from the backend's connect times;
                                      # None = off


@dataclass(frozen=True)
class HealthConfig:
    kind: HealthKind = "tcp"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    down_backoff_max: float = 30.0
    send: bytes | None = None
    expect: bytes | None = None
    path: str = "/"
    send_proxy: bool = False  # checks start with a PROXY header (v2: LOCAL) too
    initial: InitialState = "up"  # state before the first check: "up" serves at once after a restart


@dataclass(frozen=True)
class BackendConfig:
    name: str
    address: Address
    tier: int = 0
    weight: int = 1
    role_url: str | None = None  # [listener.authority] kind = "http": 200 = the primary
    discover: Discover = "off"  # "dns": stands for every A/AAAA record of its name
    resolve_interval: float = 30.0  # with discover = "dns": how often the name is looked up


@dataclass(frozen=True)
class AuthorityConfig:
    """[listener.authority] (product.md section 9): who decides the primary."""

    kind: AuthorityKind
    sentinels: tuple[Address, ...] = ()
    master_name: str = ""
    password_file: str | None = None
    interval: float = 1.0
    stale_after: float = 30.0
    replicas: ReplicaUse = "backup"


@dataclass(frozen=True)
class ListenerConfig:
    name: str
    listen: Address
    backends: tuple[BackendConfig, ...]
    balance: Balance = "first"
    connect_timeout: float = 2.0
    idle_timeout: float | None = 3600.0
    max_connections: int = 10000
    close_on_down: bool = True
    failback: Failback = "auto"
    failback_delay: float = 10.0
    drain_backup_after: float | None = None
    proxy_protocol: ProxyProtocol = "off"
    accept_proxy: AcceptProxy = "off"
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose PROXY headers are believed
    allow: tuple[str, ...] = ()  # CIDRs; empty = everyone
    deny: tuple[str, ...] = ()  # CIDRs; deny wins over allow
    max_connections_per_source: int = 0  # 0 = no limit
    access_log: bool = False
    retry: RetryConfig = field(default_factory=RetryConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    authority: AuthorityConfig | None = None  # None: local health decides (no authority)


@dataclass(frozen=True)
class Config:
    listeners: tuple[ListenerConfig, ...]
    admin: AdminConfig = field(default_factory=AdminConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: str = "<string>"
    text: str = field(default="", compare=False, repr=False)  # the TOML it was read from
