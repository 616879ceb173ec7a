"""The configuration file: TOML -> validated Config; every problem with its key path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from relay.config import (
    Address,
    AdminConfig,
    BackendConfig,
    Config,
    HealthConfig,
    ListenerConfig,
    RetryConfig,
    RuntimeConfig,
    load_config,
    parse_config,
)
from relay.errors import ConfigError, ConfigProblem

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
[[listener]]
name = "redis"
listen = "127.0.0.1:6380"

[[listener.backend]]
name = "primary"
address = "127.0.0.1:7001"
"""

FULL = """\
[admin]
listen = "[::1]:9200"
token_file = "/run/secrets/relay-admin"

[runtime]
workers = "auto"
max_connections = 500
splice = "off"
log_format = "json"
log_level = "debug"
shutdown_grace = "1m30s"

[[listener]]
name = "pg"
listen = "0.0.0.0:5433"
balance = "least_conn"
connect_timeout = "750ms"
idle_timeout = "off"
max_connections = 42
close_on_down = false
failback = "manual"
failback_delay = 20
drain_backup_after = "5m"
proxy_protocol = "v2"
access_log = true

[listener.retry]
attempts = 7
deadline = "9s"
backoff_initial = "10ms"
backoff_max = "2s"
multiplier = 3
jitter = 0.5

[listener.health]
kind = "send_expect"
interval = "500ms"
timeout = "250ms"
rise = 5
fall = 6
down_backoff_max = "1m"
send = "PING\\r\\n"
expect = "+PONG"

[[listener.backend]]
name = "primary"
address = "db-1.internal:5432"
tier = 0
weight = 3

[[listener.backend]]
name = "replica.b"
address = "[2001:db8::12]:5432"
tier = 2
weight = 1

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[listener.health]
kind = "http"
path = "/health?full=1"

[[listener.backend]]
name = "app"
address = "127.0.0.1:8080"
"""


def problems_of(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="test.toml")
    assert caught.value.source == "test.toml"
    assert caught.value.problems, "a ConfigError always carries at least one problem"
    return caught.value.problems


def only_problem(text: str) -> ConfigProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def config_with(*, top: str = "", listener: str = "", tables: str = "", backend: str = "") -> str:
    """MINIMAL with lines added: `top` before it, `listener` keys, `tables` after the
    listener keys ([listener.health] ...), `backend` keys in its only backend."""
    return (
        f"{top}\n"
        '[[listener]]\nname = "redis"\nlisten = "127.0.0.1:6380"\n'
        f"{listener}\n"
        f"{tables}\n"
        '[[listener.backend]]\nname = "primary"\naddress = "127.0.0.1:7001"\n'
        f"{backend}\n"
    )


# --- good files ---------------------------------------------------------------------------


def test_every_key_with_a_good_value_ends_up_in_the_config() -> None:
    config = parse_config(FULL, source="full.toml")
    assert config.source == "full.toml"
    assert config.admin == AdminConfig(
        listen=Address("::1", 9200), token_file="/run/secrets/relay-admin"
    )
    assert config.runtime == RuntimeConfig(
        workers=None,
        max_connections=500,
        splice="off",
        log_format="json",
        log_level="debug",
        shutdown_grace=90.0,
    )
    pg, web = config.listeners
    assert pg == ListenerConfig(
        name="pg",
        listen=Address("0.0.0.0", 5433),
        backends=(
            BackendConfig("primary", Address("db-1.internal", 5432), tier=0, weight=3),
            BackendConfig("replica.b", Address("2001:db8::12", 5432), tier=2, weight=1),
        ),
        balance="least_conn",
        connect_timeout=0.75,
        idle_timeout=None,
        max_connections=42,
        close_on_down=False,
        failback="manual",
        failback_delay=20.0,
        drain_backup_after=300.0,
        proxy_protocol="v2",
        access_log=True,
        retry=RetryConfig(
            attempts=7,
            deadline=9.0,
            backoff_initial=0.01,
            backoff_max=2.0,
            multiplier=3.0,
            jitter=0.5,
        ),
        health=HealthConfig(
            kind="send_expect",
            interval=0.5,
            timeout=0.25,
            rise=5,
            fall=6,
            down_backoff_max=60.0,
            send=b"PING\r\n",
            expect=b"+PONG",
            path="/",
        ),
    )
    assert isinstance(pg.retry.multiplier, float)
    assert web.listen == Address("127.0.0.1", 0)
    assert web.health == HealthConfig(kind="http", path="/health?full=1")
    assert web.backends == (BackendConfig("app", Address("127.0.0.1", 8080)),)


def test_defaults_are_the_models_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config == Config(
        listeners=(
            ListenerConfig(
                name="redis",
                listen=Address("127.0.0.1", 6380),
                backends=(BackendConfig("primary", Address("127.0.0.1", 7001)),),
            ),
        ),
        source="<string>",
    )


def test_defaults_are_those_of_the_product_contract() -> None:
    config = parse_config(MINIMAL)
    assert config.admin == AdminConfig(listen=Address("127.0.0.1", 9100), token_file=None)
    assert config.runtime == RuntimeConfig(
        workers=1,
        max_connections=20000,
        splice="auto",
        log_format="text",
        log_level="info",
        shutdown_grace=30.0,
    )
    listener = config.listeners[0]
    assert (listener.balance, listener.connect_timeout, listener.idle_timeout) == (
        "first",
        2.0,
        3600.0,
    )
    assert (listener.max_connections, listener.close_on_down, listener.failback) == (
        10000,
        True,
        "auto",
    )
    assert (listener.failback_delay, listener.drain_backup_after) == (10.0, None)
    assert (listener.proxy_protocol, listener.access_log) == ("off", False)
    assert listener.retry == RetryConfig(4, 5.0, 0.05, 1.0, 2.0, 0.2)
    assert listener.health == HealthConfig("tcp", 2.0, 1.0, 2, 3, 30.0, None, None, "/")
    assert listener.backends[0].tier == 0
    assert listener.backends[0].weight == 1


def test_the_repository_example_parses(tmp_path: Path) -> None:
    path = REPO / "conf" / "relay.toml"
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.admin.listen == Address("127.0.0.1", 9100)
    (demo,) = config.listeners
    assert demo.name == "demo"
    assert demo.listen == Address("127.0.0.1", 6380)
    assert demo.balance == "first"
    assert demo.health.kind == "tcp"
    assert [(b.name, str(b.address), b.tier) for b in demo.backends] == [
        ("primary", "127.0.0.1:7001", 0),
        ("backup", "127.0.0.1:7002", 1),
    ]


def test_the_repository_example_shows_the_defaults() -> None:
    example = load_config(str(REPO / "conf" / "relay.toml"))
    demo = example.listeners[0]
    defaults = parse_config(MINIMAL).listeners[0]
    assert example.runtime == RuntimeConfig()
    assert demo.retry == defaults.retry
    assert demo.health == defaults.health
    for key in ("balance", "connect_timeout", "idle_timeout", "max_connections", "failback"):
        assert getattr(demo, key) == getattr(defaults, key), key


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_config(str(path)).source == str(path)


def test_load_config_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(str(path)).listeners[0].name == "redis"


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.source == missing
    (problem,) = caught.value.problems
    assert problem.path == ""
    assert "cannot read the file: No such file or directory" in problem.message
    assert caught.value.lines() == [
        f"relay: {missing}: cannot read the file: No such file or directory"
    ]


def test_a_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(str(tmp_path))


def test_a_file_that_is_not_utf8_is_one_problem_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    (problem,) = caught.value.problems
    assert (problem.message, problem.line) == ("the file is not valid UTF-8", 8)


@pytest.mark.parametrize(
    ("value", "seconds"), [('"250ms"', 0.25), ("3", 3.0), ("0.5", 0.5), ('"1m30s"', 90.0)]
)
def test_durations_take_strings_and_numbers(value: str, seconds: float) -> None:
    config = parse_config(config_with(listener=f"connect_timeout = {value}"))
    assert config.listeners[0].connect_timeout == seconds


def test_backend_histograms_are_off_unless_asked_for() -> None:
    assert parse_config(MINIMAL).runtime.backend_histograms is False
    on = parse_config(config_with(top="[runtime]\nbackend_histograms = true"))
    assert on.runtime.backend_histograms is True


def test_workers_takes_a_count() -> None:
    assert parse_config(config_with(top="[runtime]\nworkers = 4")).runtime.workers == 4
    assert parse_config(config_with(top="[runtime]\nworkers = 256")).runtime.workers == 256


def test_zero_durations_are_allowed_where_they_mean_at_once() -> None:
    config = parse_config(
        config_with(
            listener='failback_delay = "0s"\ndrain_backup_after = 0',
            tables='[listener.retry]\nbackoff_initial = 0\nbackoff_max = "0ms"',
            top='[runtime]\nshutdown_grace = "0s"',
        )
    )
    listener = config.listeners[0]
    assert (listener.failback_delay, listener.drain_backup_after) == (0.0, 0.0)
    assert (listener.retry.backoff_initial, listener.retry.backoff_max) == (0.0, 0.0)
    assert config.runtime.shutdown_grace == 0.0


def test_send_expect_may_omit_send_for_protocols_where_the_server_speaks_first() -> None:
    health = (
        parse_config(config_with(tables='[listener.health]\nkind = "send_expect"\nexpect = "220 "'))
        .listeners[0]
        .health
    )
    assert (health.send, health.expect) == (None, b"220 ")


def test_send_and_expect_are_utf8_encoded_with_toml_escapes() -> None:
    text = config_with(
        tables='[listener.health]\nkind = "send_expect"\nsend = "h\\u00e9\\r\\n"\n'
        "expect = 'OK\\n'"
    )
    health = parse_config(text).listeners[0].health
    assert health.send == b"h\xc3\xa9\r\n"
    assert health.expect == b"OK\\n"  # a literal string: no escapes


def test_same_port_on_other_addresses_and_port_zero_do_not_conflict() -> None:
    text = (
        MINIMAL
        + '\n[[listener]]\nname = "b"\nlisten = "127.0.0.2:6380"\n'
        + '[[listener.backend]]\nname = "x"\naddress = "127.0.0.1:7001"\n'
        + '\n[[listener]]\nname = "c"\nlisten = "127.0.0.1:0"\n'
        + '[[listener.backend]]\nname = "x"\naddress = "127.0.0.1:7001"\n'
        + '\n[[listener]]\nname = "d"\nlisten = "127.0.0.1:0"\n'
        + '[[listener.backend]]\nname = "x"\naddress = "127.0.0.1:7001"\n'
    )
    assert [listener.name for listener in parse_config(text).listeners] == ["redis", "b", "c", "d"]


def test_inline_tables_and_dotted_keys_are_read_like_any_table() -> None:
    text = config_with(listener='health = { kind = "none" }\nretry.attempts = 9')
    listener = parse_config(text).listeners[0]
    assert (listener.health.kind, listener.retry.attempts) == ("none", 9)


# --- bad files: one table, each with the key path and the message expected ------------------

BAD = [
    # syntax
    ("syntax_error", "[runtime]\nworkers = \n", "", "invalid TOML"),
    ("duplicate_key", MINIMAL + 'name = "again"\n', "", "invalid TOML"),
    # unknown keys
    ("unknown_top_level", "listeners = []\n" + MINIMAL, "listeners", "did you mean 'listener'?"),
    (
        "unknown_top_level_table",
        "[metrics]\nport = 1\n" + MINIMAL,
        "metrics",
        "unknown key; expected one of: admin, runtime, listener",
    ),
    ("unknown_runtime", config_with(top="[runtime]\nwokers = 2"), "runtime.wokers", "'workers'"),
    (
        "unknown_no_close_match",
        config_with(top="[runtime]\ncolour = 1"),
        "runtime.colour",
        "expected one of: workers, max_connections, splice",
    ),
    ("unknown_admin", config_with(top='[admin]\nlisten_on = "x"'), "admin.listen_on", "'listen'"),
    (
        "unknown_listener",
        config_with(listener='balancer = "first"'),
        "listener[0].balancer",
        "unknown key; did you mean 'balance'?",
    ),
    (
        "unknown_listener_table",
        config_with(tables="[listener.healthcheck]\nrise = 1"),
        "listener[0].healthcheck",
        "did you mean 'health'?",
    ),
    (
        "unknown_health",
        config_with(tables="[listener.health]\nrize = 2"),
        "listener[0].health.rize",
        "unknown key; did you mean 'rise'?",
    ),
    (
        "unknown_retry",
        config_with(tables="[listener.retry]\nattempt = 2"),
        "listener[0].retry.attempt",
        "did you mean 'attempts'?",
    ),
    (
        "unknown_backend",
        config_with(backend="weigth = 2"),
        "listener[0].backend[0].weigth",
        "did you mean 'weight'?",
    ),
    # wrong types
    (
        "string_for_runtime_bool",
        config_with(top='[runtime]\nbackend_histograms = "yes"'),
        "runtime.backend_histograms",
        'must be true or false, got "yes"',
    ),
    (
        "string_for_int",
        config_with(top='[runtime]\nmax_connections = "100"'),
        "runtime.max_connections",
        'must be an integer >= 1, got "100"',
    ),
    (
        "bool_for_int",
        config_with(tables="[listener.health]\nrise = true"),
        "listener[0].health.rise",
        "must be an integer >= 1, got true",
    ),
    (
        "float_for_int",
        config_with(backend="weight = 2.0"),
        "listener[0].backend[0].weight",
        "must be an integer >= 1, got 2.0",
    ),
    (
        "int_for_bool",
        config_with(listener="close_on_down = 1"),
        "listener[0].close_on_down",
        "must be true or false, got 1",
    ),
    (
        "string_for_bool",
        config_with(listener='access_log = "yes"'),
        "listener[0].access_log",
        'must be true or false, got "yes"',
    ),
    (
        "table_for_string",
        config_with(top='[admin]\nlisten = { host = "127.0.0.1", port = 9100 }'),
        "admin.listen",
        'must be a string "host:port", got a table',
    ),
    (
        "string_for_table",
        config_with(listener='health = "tcp"'),
        "listener[0].health",
        'must be a table ([listener.health]), got "tcp"',
    ),
    (
        "listener_not_an_array",
        '[listener]\nname = "a"\nlisten = "127.0.0.1:1"\n',
        "listener",
        "must be an array of tables ([[listener]]), got a table",
    ),
    (
        "bool_for_duration",
        config_with(listener="connect_timeout = true"),
        "listener[0].connect_timeout",
        'must be a duration like "250ms", "2s", "5m" or a number of seconds, got true',
    ),
    ("int_for_token_file", config_with(top="[admin]\ntoken_file = 5"), "admin.token_file", "got 5"),
    ("empty_token_file", config_with(top='[admin]\ntoken_file = ""'), "admin.token_file", "empty"),
    # out of range
    (
        "rise_zero",
        config_with(tables="[listener.health]\nrise = 0"),
        "listener[0].health.rise",
        "must be an integer >= 1, got 0",
    ),
    (
        "fall_zero",
        config_with(tables="[listener.health]\nfall = 0"),
        "listener[0].health.fall",
        ">= 1",
    ),
    (
        "workers_zero",
        config_with(top="[runtime]\nworkers = 0"),
        "runtime.workers",
        'must be an integer from 1 to 256 or "auto", got 0',
    ),
    (
        "workers_257",
        config_with(top="[runtime]\nworkers = 257"),
        "runtime.workers",
        'must be an integer from 1 to 256 or "auto", got 257',
    ),
    (
        "workers_100000000",
        config_with(top="[runtime]\nworkers = 100000000"),
        "runtime.workers",
        'must be an integer from 1 to 256 or "auto", got 100000000',
    ),
    (
        "deep_nesting",
        "a = " + "[" * 5000 + "]" * 5000 + "\n",
        "",
        "nested too deeply",
    ),
    (
        "workers_string",
        config_with(top='[runtime]\nworkers = "4"'),
        "runtime.workers",
        'or "auto", got "4"',
    ),
    (
        "listener_max_connections_negative",
        config_with(listener="max_connections = -5"),
        "listener[0].max_connections",
        "got -5",
    ),
    ("weight_zero", config_with(backend="weight = 0"), "listener[0].backend[0].weight", "got 0"),
    (
        "tier_negative",
        config_with(backend="tier = -1"),
        "listener[0].backend[0].tier",
        "must be an integer >= 0, got -1",
    ),
    (
        "attempts_zero",
        config_with(tables="[listener.retry]\nattempts = 0"),
        "listener[0].retry.attempts",
        "must be an integer >= 1, got 0",
    ),
    (
        "jitter_above_one",
        config_with(tables="[listener.retry]\njitter = 1.5"),
        "listener[0].retry.jitter",
        "must be a number from 0 to 1, got 1.5",
    ),
    (
        "jitter_string",
        config_with(tables='[listener.retry]\njitter = "20%"'),
        "listener[0].retry.jitter",
        'got "20%"',
    ),
    (
        "multiplier_below_one",
        config_with(tables="[listener.retry]\nmultiplier = 0.5"),
        "listener[0].retry.multiplier",
        "must be a number >= 1.0, got 0.5",
    ),
    (
        "multiplier_infinite",
        config_with(tables="[listener.retry]\nmultiplier = inf"),
        "listener[0].retry.multiplier",
        "got inf",
    ),
    (
        "deadline_zero",
        config_with(tables="[listener.retry]\ndeadline = 0"),
        "listener[0].retry.deadline",
        "must be a duration > 0, got 0",
    ),
    (
        "connect_timeout_zero",
        config_with(listener='connect_timeout = "0s"'),
        "listener[0].connect_timeout",
        'must be a duration > 0, got "0s"',
    ),
    (
        "interval_zero",
        config_with(tables='[listener.health]\ninterval = "0ms"'),
        "listener[0].health.interval",
        "> 0",
    ),
    (
        "bad_duration",
        config_with(top='[runtime]\nshutdown_grace = "2 sec"'),
        "runtime.shutdown_grace",
        'must be a duration like "250ms", "2s", "5m" or a number of seconds, got "2 sec"',
    ),
    (
        "negative_duration",
        config_with(listener="failback_delay = -1"),
        "listener[0].failback_delay",
        "must be a duration >= 0, got -1",
    ),
    (
        "idle_timeout_never",
        config_with(listener='idle_timeout = "never"'),
        "listener[0].idle_timeout",
        'must be "off" or a duration like "250ms"',
    ),
    (
        "idle_timeout_zero",
        config_with(listener="idle_timeout = 0"),
        "listener[0].idle_timeout",
        "must be a duration > 0, got 0",
    ),
    (
        "drain_backup_after_false",
        config_with(listener="drain_backup_after = false"),
        "listener[0].drain_backup_after",
        'must be "off" or a duration',
    ),
    # enums
    (
        "bad_balance",
        config_with(listener='balance = "rr"'),
        "listener[0].balance",
        'must be one of "first", "round_robin", "least_conn", got "rr"',
    ),
    (
        "balance_near_miss",
        config_with(listener='balance = "least-conn"'),
        "listener[0].balance",
        '(did you mean "least_conn"?)',
    ),
    (
        "bad_kind",
        config_with(tables='[listener.health]\nkind = "icmp"'),
        "listener[0].health.kind",
        'must be one of "tcp", "send_expect", "http", "none", got "icmp"',
    ),
    (
        "bad_failback",
        config_with(listener="failback = true"),
        "listener[0].failback",
        'must be one of "auto", "manual", got true',
    ),
    (
        "bad_proxy_protocol",
        config_with(listener='proxy_protocol = "v3"'),
        "listener[0].proxy_protocol",
        '"off", "v1", "v2"',
    ),
    (
        "bad_log_level",
        config_with(top='[runtime]\nlog_level = "verbose"'),
        "runtime.log_level",
        'must be one of "debug", "info", "warning", "error", got "verbose"',
    ),
    (
        "bad_log_format",
        config_with(top='[runtime]\nlog_format = "JSON"'),
        "runtime.log_format",
        '"text", "json"',
    ),
    ("bad_splice", config_with(top='[runtime]\nsplice = "on"'), "runtime.splice", '"auto", "off"'),
    # names
    (
        "duplicate_listener_names",
        MINIMAL + MINIMAL.replace("6380", "6381"),
        "listener[1].name",
        'duplicate name "redis"; listener[0] has it too',
    ),
    (
        "duplicate_backend_names",
        config_with(backend='[[listener.backend]]\nname = "primary"\naddress = "127.0.0.1:7002"'),
        "listener[0].backend[1].name",
        'duplicate name "primary"; listener[0].backend[0] has it too',
    ),
    (
        "listener_name_with_space",
        MINIMAL.replace('"redis"', '"my redis"'),
        "listener[0].name",
        'used in URLs and metric labels), got "my redis"',
    ),
    (
        "backend_name_with_slash",
        MINIMAL.replace('"primary"', '"a/b"'),
        "listener[0].backend[0].name",
        'got "a/b"',
    ),
    ("empty_name", MINIMAL.replace('"redis"', '""'), "listener[0].name", "must not be empty"),
    (
        "name_starting_with_dash",
        MINIMAL.replace('"redis"', '"-redis"'),
        "listener[0].name",
        "must start with a letter or digit",
    ),
    ("int_name", MINIMAL.replace('"redis"', "7"), "listener[0].name", "must be a string, got 7"),
    # addresses and listen conflicts
    (
        "duplicate_listen",
        MINIMAL + MINIMAL.replace('"redis"', '"redis2"'),
        "listener[1].listen",
        '"127.0.0.1:6380" is already used by listener[0].listen',
    ),
    (
        "listen_equals_admin",
        MINIMAL.replace("127.0.0.1:6380", "127.0.0.1:9100"),
        "listener[0].listen",
        "is already used by admin.listen (default)",
    ),
    (
        "listen_equals_set_admin",
        '[admin]\nlisten = "[::1]:7000"\n' + MINIMAL.replace("127.0.0.1:6380", "[0::1]:7000"),
        "listener[0].listen",
        '"[0::1]:7000" is already used by admin.listen',
    ),
    (
        "wildcard_overlap",
        MINIMAL + MINIMAL.replace('"redis"', '"redis2"').replace("127.0.0.1:6380", "0.0.0.0:6380"),
        "listener[1].listen",
        'overlaps listener[0].listen ("127.0.0.1:6380")',
    ),
    (
        "unbracketed_ipv6",
        MINIMAL.replace("127.0.0.1:7001", "::1:7001"),
        "listener[0].backend[0].address",
        "must be in brackets",
    ),
    (
        "backend_port_zero",
        MINIMAL.replace("127.0.0.1:7001", "127.0.0.1:0"),
        "listener[0].backend[0].address",
        "port must be 1..65535",
    ),
    (
        "listen_missing_port",
        MINIMAL.replace("127.0.0.1:6380", "127.0.0.1"),
        "listener[0].listen",
        "missing port",
    ),
    (
        "admin_port_too_big",
        config_with(top='[admin]\nlisten = "127.0.0.1:99999"'),
        "admin.listen",
        "port must be an integer 0..65535, got 99999",
    ),
    # structure
    ("missing_listener", "[runtime]\nworkers = 1\n", "listener", "at least one [[listener]]"),
    ("empty_file", "", "listener", "at least one [[listener]] is required"),
    (
        "missing_backend",
        '[[listener]]\nname = "a"\nlisten = "127.0.0.1:1"\n',
        "listener[0].backend",
        "at least one [[listener.backend]] is required",
    ),
    (
        "missing_listener_name",
        MINIMAL.replace('name = "redis"\n', ""),
        "listener[0].name",
        "is required",
    ),
    (
        "missing_listen",
        MINIMAL.replace('listen = "127.0.0.1:6380"\n', ""),
        "listener[0].listen",
        "is required",
    ),
    (
        "missing_backend_address",
        MINIMAL.replace('address = "127.0.0.1:7001"\n', ""),
        "listener[0].backend[0].address",
        "is required",
    ),
    (
        "missing_backend_name",
        MINIMAL.replace('name = "primary"\n', ""),
        "listener[0].backend[0].name",
        "is required",
    ),
    (
        "backend_not_a_table",
        '[[listener]]\nname = "a"\nlisten = "127.0.0.1:1"\nbackend = ["127.0.0.1:2"]\n',
        "listener[0].backend[0]",
        'must be a table, got "127.0.0.1:2"',
    ),
    # health kinds
    (
        "send_expect_without_expect",
        config_with(tables='[listener.health]\nkind = "send_expect"\nsend = "PING"'),
        "listener[0].health.expect",
        'is required when kind = "send_expect"',
    ),
    (
        "send_expect_with_empty_expect",
        config_with(tables='[listener.health]\nkind = "send_expect"\nexpect = ""'),
        "listener[0].health.expect",
        "must not be empty",
    ),
    (
        "path_with_kind_tcp",
        config_with(tables='[listener.health]\nkind = "tcp"\npath = "/health"'),
        "listener[0].health.path",
        'only used when kind = "http" (kind is "tcp")',
    ),
    (
        "path_with_default_kind",
        config_with(tables='[listener.health]\npath = "/health"'),
        "listener[0].health.path",
        'only used when kind = "http"',
    ),
    (
        "send_with_kind_http",
        config_with(tables='[listener.health]\nkind = "http"\nsend = "GET"'),
        "listener[0].health.send",
        'only used when kind = "send_expect"',
    ),
    (
        "expect_with_kind_none",
        config_with(tables='[listener.health]\nkind = "none"\nexpect = "OK"'),
        "listener[0].health.expect",
        'only used when kind = "send_expect"',
    ),
    (
        "path_without_slash",
        config_with(tables='[listener.health]\nkind = "http"\npath = "health"'),
        "listener[0].health.path",
        'must start with "/", got "health"',
    ),
    (
        "path_with_space",
        config_with(tables='[listener.health]\nkind = "http"\npath = "/a b"'),
        "listener[0].health.path",
        "without spaces",
    ),
    (
        "send_not_a_string",
        config_with(tables='[listener.health]\nkind = "send_expect"\nsend = 1\nexpect = "x"'),
        "listener[0].health.send",
        "must be a string, got 1",
    ),
    # orderings between keys
    (
        "backoff_max_below_initial",
        config_with(tables='[listener.retry]\nbackoff_initial = "2s"\nbackoff_max = "500ms"'),
        "listener[0].retry.backoff_max",
        'must be >= backoff_initial (2s), got "500ms"',
    ),
    (
        "backoff_max_below_default_initial",
        config_with(tables='[listener.retry]\nbackoff_max = "10ms"'),
        "listener[0].retry.backoff_max",
        'must be >= backoff_initial (50ms, the default), got "10ms"',
    ),
    (
        "backoff_initial_above_default_max",
        config_with(tables='[listener.retry]\nbackoff_initial = "2s"'),
        "listener[0].retry.backoff_initial",
        'must be <= backoff_max (1s, the default), got "2s"',
    ),
    (
        "down_backoff_max_below_interval",
        config_with(tables='[listener.health]\ninterval = "5s"\ndown_backoff_max = "1s"'),
        "listener[0].health.down_backoff_max",
        'must be >= interval (5s), got "1s"',
    ),
    (
        "interval_above_default_down_backoff_max",
        config_with(tables='[listener.health]\ninterval = "1m"'),
        "listener[0].health.interval",
        'must be <= down_backoff_max (30s, the default), got "1m"',
    ),
    # a second listener: indexes count
    (
        "second_listener_second_backend",
        MINIMAL
        + '\n[[listener]]\nname = "b"\nlisten = "127.0.0.1:6381"\n'
        + '[[listener.backend]]\nname = "x"\naddress = "127.0.0.1:1"\n'
        + '[[listener.backend]]\nname = "y"\naddress = "127.0.0.1:port"\n',
        "listener[1].backend[1].address",
        'got "port"',
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_file_is_reported_at_its_key_path(text: str, path: str, message: str) -> None:
    problems = problems_of(text)
    assert [p.path for p in problems] == [path], problems
    assert message in problems[0].message


def test_the_bad_file_table_is_large() -> None:
    assert len(BAD) >= 25


# --- all problems at once, in file order --------------------------------------------------


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = textwrap.dedent(
        """\
        [runtime]
        workers = 0
        log_level = "verbose"

        [[listener]]
        name = "redis"
        listen = "127.0.0.1:6380"
        balance = "rr"

        [listener.health]
        rise = 0
        rize = 3

        [[listener.backend]]
        name = "primary"
        address = "127.0.0.1"

        [[listener]]
        name = "redis"
        listen = "127.0.0.1:6380"
        """
    )
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [
        (2, "runtime.workers"),
        (3, "runtime.log_level"),
        (8, "listener[0].balance"),
        (11, "listener[0].health.rise"),
        (12, "listener[0].health.rize"),
        (16, "listener[0].backend[0].address"),
        (18, "listener[1].backend"),
        (19, "listener[1].name"),
        (20, "listener[1].listen"),
    ]


def test_problems_render_as_the_product_contract_shows() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(tables="[listener.health]\nrise = 0"), source="conf/x.toml")
    assert caught.value.lines() == [
        "relay: conf/x.toml:7: listener[0].health.rise: must be an integer >= 1, got 0"
    ]
    assert str(caught.value) == caught.value.lines()[0]


# --- line numbers -------------------------------------------------------------------------


def test_syntax_error_carries_tomllib_message_and_line() -> None:
    problem = only_problem('[[listener]]\nname = "a"\nlisten = 127.0.0.1:1\n')
    assert problem.path == ""
    assert problem.line == 3
    assert problem.message.startswith("invalid TOML: ")
    assert "line 3" in problem.message


def test_syntax_error_at_end_of_document_is_on_the_last_line() -> None:
    problem = only_problem('[admin]\nlisten = "127.0.0.1:1"\n[runtime\n')
    assert problem.line == 3


def test_line_of_a_key_in_a_later_listener_and_backend() -> None:
    text = (
        MINIMAL  # lines 1-7
        + "\n"  # 8
        + "[[listener]]\n"  # 9
        + 'name = "b"\n'  # 10
        + 'listen = "127.0.0.1:6381"\n'  # 11
        + "[listener.retry]\n"  # 12
        + "jitter = 2\n"  # 13
        + "[[listener.backend]]\n"  # 14
        + 'name = "x"\n'  # 15
        + 'address = "127.0.0.1:1"\n'  # 16
        + "[[listener.backend]]\n"  # 17
        + 'name = "y"\n'  # 18
        + "  address   =   'bad'  # comment\n"  # 19
    )
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("listener[1].retry.jitter", 13),
        ("listener[1].backend[1].address", 19),
    ]


def test_a_missing_key_is_placed_on_its_table_header() -> None:
    text = MINIMAL + '\n[[listener.backend]]\nname = "second"\n'  # header on line 9
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("listener[0].backend[1].address", 9)


def test_a_missing_backend_is_placed_on_its_listener_header() -> None:
    text = MINIMAL + '\n[[listener]]\nname = "b"\nlisten = "127.0.0.1:1"\n'
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("listener[1].backend", 9)


def test_missing_listener_has_no_line() -> None:
    problem = only_problem("[runtime]\nworkers = 1\n")
    assert problem.line is None


def test_an_unknown_table_is_placed_on_its_header() -> None:
    problem = only_problem(config_with(tables="[listener.helth]\nrise = 2"))
    assert (problem.path, problem.line) == ("listener[0].helth", 6)
    assert "did you mean 'health'?" in problem.message


def test_lines_inside_multiline_strings_and_arrays_are_not_taken_for_keys() -> None:
    text = textwrap.dedent(
        '''\
        [[listener]]
        name = "redis"
        listen = "127.0.0.1:6380"
        [listener.health]
        kind = "send_expect"
        send = """
        [[listener]]
        rise = "x"
        """
        expect = \'\'\'
        [runtime]\'\'\'
        rise = 0
        [[listener.backend]]
        name = "a"
        address = "127.0.0.1:1"
        '''
    )
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("listener[0].health.rise", 12)


def test_lines_after_a_multiline_array_and_inline_table() -> None:
    text = textwrap.dedent(
        """\
        [[listener]]
        name = "redis"
        listen = "127.0.0.1:6380"
        backend = [
          { name = "a", address = "127.0.0.1:1" },  # [not a header]
          { name = "b", address = "127.0.0.1:0" },
        ]
        health = { kind = "tcp", rise = 0 }
        """
    )
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("listener[0].backend[1].address", 4),
        ("listener[0].health.rise", 8),
    ]


def test_dotted_and_quoted_keys_have_lines() -> None:
    text = MINIMAL.replace('name = "redis"', 'name = "redis"\nhealth.rise = 0\n"balance" = "x"')
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("listener[0].health.rise", 3),
        ("listener[0].balance", 4),
    ]
