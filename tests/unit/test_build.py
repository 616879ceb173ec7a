"""relay runs compiled (mypyc .so modules) or pure, and says which (relay --version)."""

import importlib
from pathlib import Path

from relay.build import HOT, flavour, is_compiled

REPO = Path(__file__).resolve().parents[2]


def test_the_flavour_is_what_python_imports():
    loaded = [importlib.import_module(m).__file__ or "" for m in HOT]
    compiled = [f.endswith(".so") for f in loaded]
    assert flavour() == ("compiled" if all(compiled) else "pure" if not any(compiled)
                         else "partly compiled")
    for module, is_so in zip(HOT, compiled, strict=True):
        assert is_compiled(module) == is_so


def test_modules_never_compiled_and_unknown_ones_are_not_compiled():
    assert not is_compiled("relay.cli")  # not in setup.py's COMPILED set
    assert not is_compiled("relay.no_such_module")
    assert not is_compiled("")


def test_the_hot_modules_are_in_the_compiled_set():
    text = (REPO / "setup.py").read_text()
    for module in HOT:
        assert f'"{module.replace(".", "/")}.py"' in text


def _setup_functions(monkeypatch) -> dict[str, object]:
    """setup.py's functions, without running setup() (a metadata command: no mypyc run)."""
    import runpy

    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    monkeypatch.setattr("sys.argv", ["setup.py", "egg_info"])
    return runpy.run_path(str(REPO / "setup.py"), run_name="relay_setup")


def test_a_compiled_session_module_brings_the_listener_that_subclasses_its_host(monkeypatch):
    # relay.net.listener.Listener subclasses session.py's SessionHost: an interpreted subclass
    # of a compiled class cannot be instantiated ("interpreted classes cannot inherit from
    # compiled"), so a RELAY_COMPILE set such as bench/ab.py's own example would not start
    wanted = _setup_functions(monkeypatch)["wanted"]
    monkeypatch.setenv("RELAY_COMPILE", "relay/net/session.py,relay/net/reactor.py")
    assert "relay/net/listener.py" in wanted()  # type: ignore[operator]
    monkeypatch.setenv("RELAY_COMPILE", "relay/net/reactor.py")
    assert wanted() == ["relay/net/reactor.py"]  # type: ignore[operator]
    monkeypatch.delenv("RELAY_COMPILE")
    assert {"relay/net/session.py", "relay/net/listener.py"} <= set(wanted())  # type: ignore[operator]


def test_a_compiled_connect_module_brings_the_dialer_that_subclasses_its_watcher(monkeypatch):
    # relay.net.dialer's Dial and Loser derive from connect.py's Watcher (which allows no
    # interpreted subclass): compiling connect.py without dialer.py would stop relay's import
    wanted = _setup_functions(monkeypatch)["wanted"]
    monkeypatch.setenv("RELAY_COMPILE", "relay/net/connect.py,relay/net/reactor.py")
    assert "relay/net/dialer.py" in wanted()  # type: ignore[operator]
