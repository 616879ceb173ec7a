"""Whether this relay runs compiled (mypyc extension modules) or as pure Python.

setup.py compiles a set of hot modules with mypyc where a C compiler is present (and
RELAY_PURE is not set); otherwise every module is a .py file. What is imported decides,
so a .py file next to its compiled .so (an in-place build) still counts as compiled.
"""

from __future__ import annotations

import importlib.util

# The modules every connection runs through: always in setup.py's COMPILED set.
HOT = ("relay.net.reactor", "relay.net.session")


def is_compiled(module: str) -> bool:
    """True when `module` would be (or was) imported from an extension module, not source."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith((".so", ".pyd"))


def flavour() -> str:
    """'compiled', 'pure', or 'partly compiled' (some hot modules compiled, some not)."""
    compiled = [is_compiled(m) for m in HOT]
    if all(compiled):
        return "compiled"
    return "partly compiled" if any(compiled) else "pure"
