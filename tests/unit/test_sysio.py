"""relay.net.sysio: recv_into, send and accept on raw fds, as the copy path and the accept
loop call them. The same tests run against the C module (compiled build: `make test` runs
the suite compiled) and the Python fallback (pure): both must behave alike."""

import errno
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.build import flavour
from relay.net import sysio

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def test_the_compiled_build_has_the_c_calls_and_the_pure_one_the_fallback():
    assert (flavour() != "pure") == sysio.NATIVE  # (the C module comes with any mypyc build)
    assert type(sysio.recv_into).__name__ == (
        "builtin_function_or_method" if sysio.NATIVE else "function")


def test_recv_into_fills_a_view_and_says_how_much(pair):
    a, b = pair
    b.sendall(b"hello world")
    buf = bytearray(64)
    assert sysio.recv_into(a.fileno(), memoryview(buf)[:5]) == 5
    assert buf[:5] == b"hello"
    assert sysio.recv_into(a.fileno(), buf) == 6
    assert buf[:6] == b" world"


def test_recv_into_an_empty_socket_says_would_block_and_eof_is_zero(pair):
    a, b = pair
    with pytest.raises(BlockingIOError):
        sysio.recv_into(a.fileno(), bytearray(8))
    b.shutdown(socket.SHUT_WR)
    assert sysio.recv_into(a.fileno(), bytearray(8)) == 0


def test_recv_into_after_a_reset_raises_connection_reset(listening):
    client = socket.create_connection(listening.getsockname())
    server, _ = listening.accept()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        client.close()  # RST
        server.setblocking(False)
        with pytest.raises(ConnectionResetError):
            sysio.recv_into(server.fileno(), bytearray(8))
    finally:
        server.close()


def test_recv_into_refuses_what_it_cannot_write_or_a_bad_fd(pair):
    a, _ = pair
    with pytest.raises((TypeError, BufferError)):  # (C: BufferError; pure: TypeError)
        sysio.recv_into(a.fileno(), b"read-only")  # type: ignore[arg-type]
    with pytest.raises((ValueError, OSError)):
        sysio.recv_into(-1, bytearray(8))
    with pytest.raises(TypeError):
        sysio.recv_into(a.fileno())  # type: ignore[call-arg]


def test_send_takes_what_fits_then_says_would_block(pair):
    a, b = pair
    assert sysio.send(a.fileno(), b"ping") == 4
    assert b.recv(16) == b"ping"
    chunk = memoryview(b"x" * 65536)
    sent = 0
    with pytest.raises(BlockingIOError):
        for _ in range(10_000):  # a socket buffer is a few MB at most
            sent += sysio.send(a.fileno(), chunk)
    assert sent > 0


def test_send_to_a_closed_peer_raises_and_the_process_lives(pair):
    a, b = pair
    b.close()
    with pytest.raises(OSError) as info:
        sysio.send(a.fileno(), b"late")
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_a_send_to_a_closed_peer_never_raises_sigpipe():
    if not sysio.NATIVE:  # os.write relies on the interpreter ignoring SIGPIPE, as it does
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
        return
    # the C send's MSG_NOSIGNAL: EPIPE even where SIGPIPE would kill the process
    code = ("import signal, socket\n"
            "from relay.net import sysio\n"
            "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
            "a, b = socket.socketpair(); b.close()\n"
            "try:\n    sysio.send(a.fileno(), b'x')\n"
            "except BrokenPipeError:\n    print('EPIPE')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout.strip()) == (0, "EPIPE"), done.stderr


@pytest.mark.parametrize("source", ["127.0.0.1", "127.10.200.3", "127.255.0.99", "127.1.22.111"])
def test_accept_gives_a_non_blocking_socket_and_the_peer_as_socket_accept_would(listening,
                                                                                source):
    client = socket.socket()
    client.bind((source, 0))
    client.connect(listening.getsockname())
    try:
        got = sysio.accept(listening, listening.fileno())
        assert got is not None
        sock, host, port = got
        try:
            fd = sock.fileno()
            assert (host, port) == client.getsockname()
            assert not os.get_blocking(fd)
            assert not os.get_inheritable(fd)  # close-on-exec: workers and checks don't get it
            assert sock.getsockname() == listening.getsockname()
            client.sendall(b"hi")
            select.select([fd], [], [], 5.0)  # (bounded: loopback delivers at once)
            assert sock.recv(8, socket.MSG_PEEK) == b"hi"  # (a PROXY header's first look)
            assert sock.recv(1) == b"h" and sock.recv(8) == b"i"
            with pytest.raises(BlockingIOError):
                sock.recv(8)
            accepted = socket.socket(fileno=os.dup(fd))
            try:
                assert accepted.getpeername() == client.getsockname()
            finally:
                accepted.close()
            client.shutdown(socket.SHUT_WR)
            select.select([fd], [], [], 5.0)
            assert sock.recv(8) == b""  # EOF
        finally:
            sock.close()
    finally:
        client.close()


def test_accept_on_an_empty_queue_gives_none(listening):
    assert sysio.accept(listening, listening.fileno()) is None


def test_accept_an_ipv6_client_gives_its_text_and_port():
    listening = socket.socket(socket.AF_INET6)
    listening.bind(("::1", 0))
    listening.listen(4)
    listening.setblocking(False)
    client = socket.create_connection(listening.getsockname()[:2])
    try:
        got = sysio.accept(listening, listening.fileno())
        assert got is not None
        sock, host, port = got
        try:
            assert (host, port) == client.getsockname()[:2] == ("::1", client.getsockname()[1])
            assert sock.getsockname() == listening.getsockname()  # (host, port, flow, scope)
        finally:
            sock.close()
    finally:
        client.close()
        listening.close()


def test_accept_on_a_closed_socket_or_a_bad_number_raises(listening):
    closed = socket.socket()
    closed.close()
    with pytest.raises((ValueError, OSError)):
        sysio.accept(closed, -1)
    with pytest.raises(TypeError):
        sysio.accept(listening)  # type: ignore[call-arg]


def test_recv_refuses_a_negative_size_and_a_closed_socket_says_ebadf(listening):
    client = socket.create_connection(listening.getsockname())
    try:
        got = sysio.accept(listening, listening.fileno())
        assert got is not None
        sock = got[0]
        with pytest.raises(ValueError):
            sock.recv(-1)
        assert sock.recv(0) == b""
        sock.close()
        for call in (lambda: sock.recv(8), sock.getsockname):
            with pytest.raises(OSError) as raised:
                call()
            assert raised.value.errno == errno.EBADF
    finally:
        client.close()


@pytest.fixture
def epoll():
    ep = select.epoll()
    yield ep
    ep.close()


def test_epoll_reports_readiness_as_select_epoll_does(epoll, pair):
    a, b = pair
    epfd = epoll.fileno()
    sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_ADD, a.fileno(), select.EPOLLIN)
    assert sysio.epoll_wait(epoll, epfd, 0.0, 16) == []
    b.send(b"x")
    assert sysio.epoll_wait(epoll, epfd, 5.0, 16) == [(a.fileno(), select.EPOLLIN)]
    sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_MOD, a.fileno(), select.EPOLLOUT)
    assert sysio.epoll_wait(epoll, epfd, -1.0, 16) == [(a.fileno(), select.EPOLLOUT)]
    sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_DEL, a.fileno(), 0)
    assert sysio.epoll_wait(epoll, epfd, 0.0, 16) == []


def test_epoll_wait_gives_at_most_maxevents(epoll):
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        for a, b in pairs:
            b.send(b"x")
            sysio.epoll_ctl(epoll, epoll.fileno(), sysio.EPOLL_CTL_ADD, a.fileno(),
                            select.EPOLLIN)
        assert len(sysio.epoll_wait(epoll, epoll.fileno(), 0.0, 3)) == 3
        assert len(sysio.epoll_wait(epoll, epoll.fileno(), 0.0, 1024)) == 5  # level-triggered
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_epoll_wait_never_returns_before_its_timeout(epoll):
    for timeout in (0.0004, 0.003):  # (rounded up to a whole millisecond, never down)
        start = time.monotonic()
        assert sysio.epoll_wait(epoll, epoll.fileno(), timeout, 16) == []
        assert time.monotonic() - start >= timeout


def test_epoll_ctl_errors_raise_oserror(epoll, pair):
    a, _ = pair
    epfd = epoll.fileno()
    with pytest.raises(FileNotFoundError):  # ENOENT: modify what was never registered
        sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_MOD, a.fileno(), select.EPOLLIN)
    sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_ADD, a.fileno(), select.EPOLLIN)
    with pytest.raises(FileExistsError):  # EEXIST
        sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_ADD, a.fileno(), select.EPOLLIN)
    with pytest.raises(OSError) as info:
        sysio.epoll_ctl(epoll, epfd, 99, a.fileno(), select.EPOLLIN)
    assert info.value.errno == errno.EINVAL


def test_a_signal_handler_raising_during_a_wait_reaches_the_caller(epoll):
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            sysio.epoll_wait(epoll, epoll.fileno(), 30.0, 16)  # (the alarm ends it, not this)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_linger_reset_makes_close_send_a_reset(listening):
    client = socket.create_connection(listening.getsockname())
    server, _ = listening.accept()
    try:
        sysio.linger_reset(server, server.fileno())
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == \
            struct.pack("ii", 1, 0)
        server.close()
        with pytest.raises(ConnectionResetError):
            client.recv(8)
    finally:
        client.close()
        server.close()


def test_linger_reset_on_a_closed_socket_raises(pair):
    a, _ = pair
    fd = a.fileno()
    a.close()
    with pytest.raises(OSError):
        sysio.linger_reset(a, fd)


def test_linger_reset_of_a_closed_socket_by_its_number_raises_oserror_in_both_builds(pair):
    """A closed socket's fileno() is -1: the fallback's setsockopt says EBADF (OSError), which
    reset_on_close ignores; the C call said ValueError ("out of range"), which it does not."""
    a, _ = pair
    a.close()
    with pytest.raises(OSError) as raised:
        sysio.linger_reset(a, a.fileno())
    assert raised.value.errno == errno.EBADF


def test_a_reset_close_of_a_socket_already_closed_raises_nothing(pair):
    """As before linger_reset (setsockopt on a closed socket: EBADF, suppressed)."""
    from relay.net.edge import reset_and_close

    a, _ = pair
    a.close()
    reset_and_close(a)


def test_a_reset_close_of_an_accepted_socket_already_closed_raises_nothing(listening):
    """The same for what a listener holds now: sysio.accept's socket (the C Socket where
    built), closed, its fileno -1."""
    from relay.net.edge import reset_and_close

    client = socket.create_connection(listening.getsockname())
    try:
        got = sysio.accept(listening, listening.fileno())
        assert got is not None
        got[0].close()
        reset_and_close(got[0])
        assert got[0].fileno() == -1
    finally:
        client.close()


@pytest.mark.skipif(sysio.NATIVE, reason="the fallback's error path (the C accept has its own)")
def test_the_fallback_accept_closes_the_number_if_no_socket_object_takes_it(listening,
                                                                           monkeypatch):
    class Refusing:
        @staticmethod
        def socket(*args):
            raise MemoryError("no socket object")

    client = socket.create_connection(listening.getsockname())
    opened = set(os.listdir("/proc/self/fd"))
    try:
        monkeypatch.setattr(sysio, "_socket", Refusing)
        with pytest.raises(MemoryError):
            sysio.accept(listening, listening.fileno())
        monkeypatch.undo()
        assert set(os.listdir("/proc/self/fd")) <= opened  # the accepted number was closed
    finally:
        client.close()


@pytest.fixture
def ready(epoll, pair):
    """An epoll with one readable socket in it: a wait returns at once, whatever its timeout
    (so a timeout the C version misread shows as a wrong result, not as a hang)."""
    a, b = pair
    b.send(b"x")
    sysio.epoll_ctl(epoll, epoll.fileno(), sysio.EPOLL_CTL_ADD, a.fileno(), select.EPOLLIN)
    return epoll, a.fileno()


def test_epoll_wait_refuses_a_nan_timeout_as_epoll_poll_does(ready):
    epoll, _ = ready
    # (C: (int)NaN is undefined; x86 gives INT_MIN, a negative timeout: no limit)
    with pytest.raises(ValueError):
        sysio.epoll_wait(epoll, epoll.fileno(), float("nan"), 16)


@pytest.mark.parametrize("timeout", [2_147_484.0, 1e10, float("inf")])
def test_epoll_wait_takes_a_timeout_longer_than_int_max_milliseconds(ready, timeout):
    # a timer 25 days away (idle_timeout = "600h" and nothing sooner): epoll.poll refuses
    # more than INT_MAX ms with OverflowError, which ended the pure build's loop
    epoll, fd = ready
    assert sysio.epoll_wait(epoll, epoll.fileno(), timeout, 16) == [(fd, select.EPOLLIN)]


def test_epoll_ctl_and_wait_refuse_numbers_beyond_a_c_int(epoll, pair):
    a, _ = pair
    epfd = epoll.fileno()
    # (C: a cast to int made 2**32 + 1 EPOLL_CTL_ADD, and 2**32 + 3 maxevents 3)
    with pytest.raises(OSError) as info:
        sysio.epoll_ctl(epoll, epfd, 2**32 + sysio.EPOLL_CTL_ADD, a.fileno(), select.EPOLLIN)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):  # so it was not registered
        sysio.epoll_ctl(epoll, epfd, sysio.EPOLL_CTL_MOD, a.fileno(), select.EPOLLIN)
    with pytest.raises((ValueError, OverflowError)):
        sysio.epoll_wait(epoll, epfd, 0.0, 2**32 + 3)


def test_recv_into_an_empty_buffer_gives_zero_as_socket_recv_into_does(pair):
    a, b = pair
    assert a.recv_into(bytearray(0)) == 0  # (the socket module's answer, with nothing queued)
    assert sysio.recv_into(a.fileno(), bytearray(0)) == 0
    b.send(b"x")
    assert sysio.recv_into(a.fileno(), memoryview(bytearray(8))[:0]) == 0


@pytest.mark.skipif(not sysio.NATIVE, reason="the fallback's os calls wait with the GIL released")
def test_the_c_calls_never_wait_on_a_blocking_socket():
    """The C recv_into and send keep the GIL: on a socket left blocking by mistake a wait
    would stop every thread and the loop's signal handling. MSG_DONTWAIT: EAGAIN instead."""
    class Waited(Exception):
        pass

    def alarm(signum, frame):
        raise Waited

    a, b = socket.socketpair()  # blocking
    old = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)  # (only ends a wait the test is about)
        with pytest.raises(BlockingIOError):
            sysio.recv_into(a.fileno(), bytearray(8))
        with pytest.raises(BlockingIOError):
            for _ in range(10_000):  # a socket buffer is a few MB at most
                sysio.send(a.fileno(), b"x" * 65536)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        a.close()
        b.close()


# -- connect: a backend's socket ------------------------------------------------------------


def _connect(listening):
    """sysio.connect to `listening`, and the server side once it is accepted."""
    sock, err = sysio.connect(socket.AF_INET, listening.getsockname(), True)
    assert err in (0, errno.EINPROGRESS)
    select.select([], [sock.fileno()], [], 5.0)  # (bounded; loopback connects at once)
    server, _ = listening.accept()
    return sock, server


def test_connect_gives_a_non_blocking_nodelay_socket_as_socket_connect_ex_would(listening):
    sock, server = _connect(listening)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert os.get_blocking(sock.fileno()) is False
        assert os.get_inheritable(sock.fileno()) is False  # close-on-exec, as socket.socket
        assert server.getpeername()[0] == "127.0.0.1"
        assert sock.send(b"ping") == 4
        assert server.recv(8) == b"ping"
        server.sendall(b"pong")
        time.sleep(0.05)
        assert sysio.recv_into(sock.fileno(), buf := bytearray(8)) == 4 and buf[:4] == b"pong"
        sock.shutdown(socket.SHUT_WR)
        assert server.recv(8) == b""  # the FIN
    finally:
        sock.close()
        server.close()


def test_connect_sets_tcp_nodelay_only_when_asked(listening):
    for nodelay in (True, False):
        sock, err = sysio.connect(socket.AF_INET, listening.getsockname(), nodelay)
        try:
            assert err in (0, errno.EINPROGRESS)
            assert bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) is nodelay
        finally:
            sock.close()
        select.select([listening], [], [], 5.0)
        listening.accept()[0].close()


@pytest.fixture
def refused():
    """A connect (sysio.connect) to a port bound but not listening, and its first errno."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        sock, err = sysio.connect(socket.AF_INET, probe.getsockname(), True)
        try:
            yield sock, err
        finally:
            sock.close()


def test_connect_to_a_closed_port_reports_the_refusal(refused):
    sock, err = refused
    if err == errno.EINPROGRESS:
        select.select([], [sock.fileno()], [], 5.0)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == errno.ECONNREFUSED


def test_connect_over_ipv6_with_and_without_flowinfo_and_scope():
    try:
        server = socket.socket(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 here")
    with server:
        server.bind(("::1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        for address in (("::1", port), ("::1", port, 0, 0)):
            sock, err = sysio.connect(socket.AF_INET6, address, True)
            try:
                assert err in (0, errno.EINPROGRESS)
                select.select([], [sock.fileno()], [], 5.0)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                accepted, peer = server.accept()
                accepted.close()
                assert peer[0] == "::1"
            finally:
                sock.close()


@pytest.mark.parametrize("family, address, error", [
    (socket.AF_INET, ("127.0.0.1", 70000), OverflowError),
    (socket.AF_INET, ("127.0.0.1", -1), OverflowError),
    (socket.AF_INET, "127.0.0.1:80", TypeError),
    (socket.AF_INET, ("127.0.0.1",), TypeError),
    (socket.AF_INET6, ("::1", 80, 1 << 20, 0), OverflowError),  # flowinfo: 20 bits
])
@pytest.mark.parametrize("connect", [sysio.connect, sysio.socket_connect],
                         ids=["connect", "socket_connect"])
def test_connect_refuses_a_bad_address_and_leaves_no_socket(family, address, error, connect):
    """The socket made before the address was read is closed, not left to the collector (the
    fallback closed it only on OSError: a TypeError left it open, with a ResourceWarning)."""
    import gc
    import warnings

    before = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            connect(family, address, True)
        except error:
            pass
        else:
            pytest.fail(f"{address!r} was taken")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.skipif(not sysio.NATIVE, reason="the fallback's connect_ex resolves a name")
def test_the_c_connect_takes_numeric_addresses_only():
    """Names are resolved off the loop (relay/net/resolve.py) before any connect: a name here
    is a bug, refused at once (the socket module would resolve it, blocking the loop). What
    the socket module lets through (a bytes host, a flowinfo it truncates to 32 bits) is
    refused too: relay's addresses come from getaddrinfo, str and in range."""
    for host in ("localhost", "127.0.0.1%junk", "127.0.0.1\0junk", "::1", "1.2.3.4.5", ""):
        with pytest.raises(OSError) as raised:  # (OSError: the dialer closes the session)
            sysio.connect(socket.AF_INET, (host, 80), True)
        assert raised.value.errno == errno.EINVAL
    with pytest.raises(OSError) as raised:
        sysio.connect(socket.AF_INET6, ("::1\0junk", 80), True)
    assert raised.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        sysio.connect(socket.AF_INET, (b"127.0.0.1", 80), True)
    with pytest.raises(OverflowError):
        sysio.connect(socket.AF_INET6, ("::1", 80, 1 << 40, 0), True)
    with pytest.raises(OSError) as raised:
        sysio.connect(socket.AF_UNIX, ("127.0.0.1", 80), True)
    assert raised.value.errno == errno.EAFNOSUPPORT


def _outcome(connect, family, address):
    """How a connect ended: its errno once complete (bounded wait), or the exception's."""
    try:
        sock, err = connect(family, address, True)
    except OSError as exc:
        return ("raised", exc.errno)
    try:
        if err == errno.EINPROGRESS:
            select.select([], [sock.fileno()], [], 5.0)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return ("errno", err)
    finally:
        sock.close()


def test_connect_ends_as_the_socket_modules_connect_ex_for_every_address_form():
    """The C connect against the socket module's, on the same addresses (in the pure build
    both are the socket module's): refused ports over IPv4 and IPv6 in each tuple form, and a
    link-local address with and without a scope."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        cases = [(socket.AF_INET, ("127.0.0.1", port))]
        try:
            with socket.socket(socket.AF_INET6) as probe6:
                probe6.bind(("::1", 0))
                port6 = probe6.getsockname()[1]
                lo = socket.if_nametoindex("lo")
                cases += [(socket.AF_INET6, ("::1", port6)), (socket.AF_INET6, ("::1", port6, 0)),
                          (socket.AF_INET6, ("::1", port6, 0, 0)),
                          (socket.AF_INET6, ("fe80::1", port6, 0, 0)),
                          (socket.AF_INET6, ("fe80::1", port6, 0, lo)),
                          (socket.AF_INET6, ("fe80::1%lo", port6, 0, lo))]
                outcomes = [(_outcome(sysio.connect, *case), _outcome(sysio.socket_connect, *case))
                            for case in cases]
        except OSError:  # no IPv6 here
            outcomes = [(_outcome(sysio.connect, *case), _outcome(sysio.socket_connect, *case))
                        for case in cases]
    for case, (ours, theirs) in zip(cases, outcomes, strict=True):
        assert ours == theirs, case
    assert outcomes[0][0] == ("errno", errno.ECONNREFUSED)


def test_a_closed_socket_says_so_and_a_second_close_does_nothing(listening):
    sock, server = _connect(listening)
    server.close()
    sock.close()
    assert sock.fileno() == -1
    sock.close()
    for call in (lambda: sock.send(b"x"), lambda: sock.shutdown(socket.SHUT_WR),
                 lambda: sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)):
        with pytest.raises(OSError) as raised:
            call()
        assert raised.value.errno == errno.EBADF


def test_a_send_to_a_reset_peer_raises_and_the_process_lives(listening):
    sock, server = _connect(listening)
    sysio.linger_reset(server, server.fileno())
    server.close()
    time.sleep(0.05)
    try:
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(3):  # the first may be taken before the reset is seen
                sock.send(b"x")
                time.sleep(0.05)
    finally:
        sock.close()


def test_an_unclosed_socket_warns_and_its_fd_is_closed(listening):
    import gc
    import warnings

    sock, server = _connect(listening)
    fd = sock.fileno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del sock
        gc.collect()
    try:
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        with pytest.raises(OSError) as raised:
            os.fstat(fd)  # (nothing else opened a file in between)
        assert raised.value.errno == errno.EBADF
        assert server.recv(8) == b""  # the peer saw it go
    finally:
        server.close()


def test_so_error_tells_how_a_connect_ended(refused):
    sock, err = refused
    assert err in (errno.EINPROGRESS, errno.ECONNREFUSED)
    if err == errno.EINPROGRESS:
        select.select([], [sock.fileno()], [], 5.0)
        assert sysio.so_error(sock, sock.fileno()) == errno.ECONNREFUSED
    assert sysio.so_error(sock, sock.fileno()) == 0  # (read once: cleared)


def test_shutdown_by_function_ends_the_peers_reading_and_close_closes(listening):
    sock, server = _connect(listening)
    try:
        assert sysio.fileno(sock) == sock.fileno() >= 0
        sysio.shutdown(sock, sock.fileno(), socket.SHUT_WR)
        server.settimeout(5.0)
        assert server.recv(8) == b""  # the peer sees the end of what we send
        sysio.close(sock)
        assert sock.fileno() == -1 == sysio.fileno(sock)
        sysio.close(sock)  # a second close does nothing, as socket.close
        for call in (lambda: sysio.shutdown(sock, sock.fileno(), socket.SHUT_WR),
                     lambda: sysio.so_error(sock, sock.fileno())):
            with pytest.raises(OSError) as raised:
                call()
            assert raised.value.errno == errno.EBADF
    finally:
        server.close()


def test_close_by_function_closes_a_socket_module_socket_too(pair):
    """Tests hand sessions socket.socket objects: sysio.close (and fileno) must take those as
    well."""
    a, b = pair
    assert sysio.fileno(a) == a.fileno()
    sysio.close(a)
    assert a.fileno() == -1
    assert b.recv(8) == b""
