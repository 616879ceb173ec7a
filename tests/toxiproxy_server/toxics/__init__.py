"""The toxic types, one module each (as in Shopify/toxiproxy's toxics/ directory)."""

from . import bandwidth, latency, limit_data, noop, reset_peer, slicer, slow_close, timeout
from .toxic import REGISTRY, Toxic, ToxicStub

__all__ = [
    "REGISTRY",
    "Toxic",
    "ToxicStub",
    "bandwidth",
    "latency",
    "limit_data",
    "noop",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
]
