"""Build relay compiled with mypyc where a C compiler is present, pure Python where not.

    pip install .                       # compiled if a C compiler and Python's headers are here
    RELAY_PURE=1 pip install .          # pure Python, whatever is installed
    python setup.py build_ext --inplace # compiled .so files next to the .py files (make compiled)

The metadata is in pyproject.toml; this file only adds the compiled extension modules.
mypy (which ships mypyc) is a build requirement there ([build-system] requires).

Which modules are compiled is COMPILED below, chosen by measurement; RELAY_COMPILE
(comma-separated paths, or "all" for every module under relay/core and relay/net) overrides
it for an experiment, as bench/ab.py's `REV@compiled=...` columns do.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

# The compiled set, chosen by measurement (bench/NOTES.md, "Compiled with mypyc"): the modules
# a session's accept / connect / copy / close path and the reactor loop run through, per
# connection and per request. bench/ab.py with WORK@compiled=<set> columns side by side
# (redis-benchmark -k 0 and -k 1 through relay, HAProxy as the yardstick) compared this set
# with everything under relay/core + relay/net compiled: the same within the noise, so the
# config, admin, checks, sentinel and authority code stays interpreted (startup, tracebacks
# and monkeypatching in tests stay plain Python there). To re-measure after a refactor that
# adds or moves a hot module: add its path here (or try RELAY_COMPILE=all) and run
#   .venv/bin/python bench/ab.py WORK WORK@compiled WORK@compiled=all
COMPILED = [
    "relay/net/reactor.py",
    "relay/net/session.py",
    "relay/net/listener.py",
    "relay/net/accept.py",
    "relay/net/connect.py",
    "relay/net/channel.py",
    "relay/net/buffers.py",
    "relay/net/splice.py",
    "relay/net/sliced.py",
    "relay/net/exchange.py",
    "relay/net/timers.py",
    "relay/net/idle.py",
    "relay/net/counts.py",
    "relay/net/hedge.py",
    "relay/net/backends.py",
    "relay/core/balance.py",
    "relay/core/candidates.py",
    "relay/core/hedge.py",
    "relay/core/passive.py",
    "relay/core/backoff.py",
    "relay/core/tiers.py",
    "relay/core/access.py",
    "relay/core/proxy_header.py",
    "relay/core/health.py",
    "relay/core/events.py",
]


def wanted() -> list[str]:
    """The module paths to compile: RELAY_COMPILE if set, else COMPILED; only those present."""
    override = os.environ.get("RELAY_COMPILE", "").strip()
    if override == "all":
        paths = [str(p.relative_to(HERE)) for d in ("relay/core", "relay/net")
                 for p in sorted((HERE / d).glob("*.py")) if p.name != "__init__.py"]
    elif override:
        paths = [p.strip() for p in override.split(",") if p.strip()]
    else:
        paths = COMPILED
    # a module a refactor removed is skipped, not a build failure
    return [p for p in paths if (HERE / p).is_file()]


def why_pure() -> str | None:
    """Why this build is pure Python, or None when it can be compiled."""
    if os.environ.get("RELAY_PURE", "") not in ("", "0"):
        return "RELAY_PURE is set"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python.h (install python3-dev)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (mypyc) is not installed"
    return None


def ext_modules() -> list[object]:
    reason = why_pure()
    if reason is not None:
        print(f"relay: building pure Python: {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    paths = wanted()
    print(f"relay: compiling {len(paths)} modules with mypyc", file=sys.stderr)
    return list(mypycify(paths, opt_level="3"))


setup(ext_modules=ext_modules())
