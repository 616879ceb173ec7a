"""Configuration: TOML file -> validated, frozen dataclasses (see model.py)."""

from relay.config.load import load_config, parse_config
from relay.config.model import (
    Address,
    AdminConfig,
    BackendConfig,
    Config,
    HealthConfig,
    ListenerConfig,
    RetryConfig,
    RuntimeConfig,
)

__all__ = [
    "Address",
    "AdminConfig",
    "BackendConfig",
    "Config",
    "HealthConfig",
    "ListenerConfig",
    "RetryConfig",
    "RuntimeConfig",
    "load_config",
    "parse_config",
]
