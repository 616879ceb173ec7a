"""Build relay compiled with mypyc where a C compiler is present, pure Python where not.

    pip install .                       # compiled if a C compiler and Python's headers are here
    RELAY_PURE=1 pip install .          # pure Python, whatever is installed
    python setup.py build_ext --inplace # compiled .so files next to the .py files (make compiled)

The metadata is in pyproject.toml; this file only adds the compiled extension modules.
mypy (which ships mypyc) is a build requirement there ([build-system] requires).

Which modules are compiled is COMPILED below, chosen by measurement; RELAY_COMPILE
(comma-separated paths, or "all": every module under relay/core and relay/net but server.py)
overrides it for an experiment, as bench/ab.py's `REV@compiled=...` columns do.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

# The compiled set, chosen by measurement (bench/NOTES.md, "Compiled with mypyc"): the modules
# a session's accept / connect / copy / close path and the reactor loop run through, per
# connection and per request. bench/ab.py with WORK@compiled=<set> columns side by side
# (redis-benchmark -k 0 and -k 1 through relay, HAProxy as the yardstick; user CPU per new
# connection: pure 25 us, this set 17, all of relay/core + relay/net 18, only reactor,
# session, listener, timers and idle 25): so the admin, sentinel and authority code stays
# interpreted (startup, tracebacks and test doubles stay plain Python). Counted in
# instructions with callgrind (bench/NOTES.md, "Profiling the compiled build"), compiling the
# dialer and the config model (read per connection) bought 12 % and 2.6 % per new
# connection; compiling checker.py (timed, it bought nothing outside the noise) cut a
# health check's instructions by 19 % (33.9k -> 27.5k at 300 backends); relay/logs.py and
# relay/net/resolve.py (log.debug_enabled and a connect's SockAddr, read per session) about
# 0.6k and 0.4k instructions per new connection (the fifth round).
# To re-measure after a refactor that adds or moves a hot module (a path missing here is
# skipped, not an error; a new module runs interpreted until added): add its path here and run
#   .venv/bin/python bench/ab.py WORK WORK@compiled WORK@compiled=all
COMPILED = [
    "relay/config/model.py",
    "relay/logs.py",
    "relay/net/reactor.py",
    "relay/net/session.py",
    "relay/net/listener.py",
    "relay/net/accept.py",
    "relay/net/connect.py",
    "relay/net/resolve.py",
    "relay/net/channel.py",
    "relay/net/buffers.py",
    "relay/net/splice.py",
    "relay/net/sliced.py",
    "relay/net/exchange.py",
    "relay/net/timers.py",
    "relay/net/idle.py",
    "relay/net/counts.py",
    "relay/net/share.py",
    "relay/net/dialer.py",
    "relay/net/backends.py",
    "relay/core/balance.py",
    "relay/core/candidates.py",
    "relay/core/hedge.py",
    "relay/core/dial.py",
    "relay/core/connect_error.py",
    "relay/core/passive.py",
    "relay/core/backoff.py",
    "relay/core/tiers.py",
    "relay/core/access.py",
    "relay/core/proxy_header.py",
    "relay/core/health.py",
    "relay/core/events.py",
    "relay/net/checker.py",
]

# modules whose classes are subclassed in another module (session.py's SessionHost by
# listener.py's Listener): compiled only together with those, whatever RELAY_COMPILE says
SUBCLASSED_IN = {"relay/net/session.py": ("relay/net/listener.py",),
                 "relay/net/connect.py": ("relay/net/dialer.py",)}


def wanted() -> list[str]:
    """The module paths to compile: RELAY_COMPILE if set, else COMPILED; only those present."""
    override = os.environ.get("RELAY_COMPILE", "").strip()
    if override == "all":  # server.py: mypyc cannot compile its class attributes holding classes
        paths = [str(p.relative_to(HERE)) for d in ("relay/core", "relay/net")
                 for p in sorted((HERE / d).glob("*.py"))
                 if p.name not in ("__init__.py", "server.py")]
    elif override:
        paths = [p.strip() for p in override.split(",") if p.strip()]
    else:
        paths = list(COMPILED)
    # a compiled class's interpreted subclass cannot be instantiated (mypyc): a module goes
    # with the ones subclassing its classes
    for path in list(paths):
        paths += [p for p in SUBCLASSED_IN.get(path, ()) if p not in paths]
    # a module a refactor removed is skipped, not a build failure
    return [p for p in paths if (HERE / p).is_file()]


def why_pure() -> str | None:
    """Why this build is pure Python, or None when it can be compiled."""
    if os.environ.get("RELAY_PURE", "") not in ("", "0"):
        return "RELAY_PURE is set"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python.h (install python3-dev)"
    if not compiles():
        return f"{cc} cannot build a Python extension here (C library headers missing?)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (mypyc) is not installed"
    return None


def compiles() -> bool:
    """Whether the compiler builds a file that includes Python.h (a compiler without libc's
    headers, say, is found by shutil.which but cannot build anything)."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    with tempfile.TemporaryDirectory(prefix="relay-cc-") as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("#include <Python.h>\n#include <string.h>\n"
                          "int relay_probe(void) { return (int)strlen(\"x\"); }\n")
        compiler = new_compiler()
        customize_compiler(compiler)
        try:
            compiler.compile([str(source)], output_dir=tmp,
                             include_dirs=[sysconfig.get_paths()["include"]])
        except Exception:  # CompileError, from distutils or setuptools' copy of it; OSError
            return False
    return True


# the commands that build extension modules; metadata commands (egg_info, dist_info: pip asks
# for them before building) skip the mypyc run, which takes a while
BUILDS = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel"}


def ext_modules() -> list[object]:
    if not BUILDS.intersection(sys.argv[1:]):
        return []
    reason = why_pure()
    if reason is not None:
        print(f"relay: building pure Python: {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    paths = wanted()
    if not paths:
        print("relay: building pure Python: no module to compile (RELAY_COMPILE)", file=sys.stderr)
        return []
    print(f"relay: compiling {len(paths)} modules with mypyc", file=sys.stderr)
    # and the system calls of the copy and accept paths (relay/net/sysio.py falls back to
    # Python's os and socket modules where this is not built)
    sysio = Extension("relay.net._sysio", ["relay/net/_sysio.c"], extra_compile_args=["-O2"])
    return [*mypycify(paths, opt_level="3"), sysio]


class BuildExt(build_ext):
    """build_ext that first drops compiled modules an earlier build left in its build
    directory: a module since taken out of COMPILED (or RELAY_PURE=1) must not ship stale."""

    def run(self) -> None:
        lib = Path(self.build_lib)
        for old in [*lib.glob("relay/**/*.so"), *lib.glob("*__mypyc*.so")]:
            old.unlink()
        super().run()


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
