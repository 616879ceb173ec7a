"""relay: a resilient TCP proxy for services with a primary and standbys."""

__version__ = "0.1.0"
