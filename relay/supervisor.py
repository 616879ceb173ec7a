"""`workers = N`: one supervisor, N worker processes sharing the listening sockets.

The supervisor binds every listening socket once and hands the same sockets to each
worker (one accept queue per listener: no SO_REUSEPORT, so a worker that dies loses
no queued connection — the others accept them). It alone checks health and serves
the admin API; workers mirror its health decisions over a channel. Each worker starts
from the configuration the supervisor is running (its validated text and resolved
addresses, on an inherited descriptor), never from the file. Workers count into files
mapped in memory that the supervisor sums for /metrics (relay.net.counts): a dead
worker's last values stay in the totals and its file goes, as prometheus_client's
mark_process_dead does. It restarts a worker that dies (backoff when it keeps dying)
and /readyz says 503 while fewer run than configured; it forwards SIGTERM, reloads on
SIGHUP by starting a new generation of workers on the new configuration (each old
worker drains once its successor is ready), and exits 0 once every worker is gone.
Workers are spawned one per loop turn, so a signal is handled between two spawns.
In the shape of gunicorn's arbiter: signal handlers only record; the loop acts.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter, deque
from typing import Any

from relay.logs import log
from relay.net.backends import Backend, BackendGroup
from relay.net.channel import Channel
from relay.net.counts import Key, read_counts, settled
from relay.net.messages import (
    BadMessage,
    CheckWanted,
    Failed,
    Health,
    PassiveFailure,
    Ready,
    WorkerStats,
    decode,
    encode,
)
from relay.net.server import ControlServer
from relay.net.share import ABSENT, AcceptBoard
from relay.runconfig import RunConfig
from relay.worker import running_config

QUICK_DEATH = 10.0  # a worker that dies sooner than this after its start is restarted with backoff
MAX_BACKOFF = 30.0


class Worker:
    def __init__(self, slot: int, generation: int, proc: subprocess.Popen[bytes],
                 channel: Channel, started: float, counts: str) -> None:
        self.slot = slot
        self.generation = generation
        self.proc = proc
        self.channel = channel
        self.started = started
        self.counts = counts  # the file its counters live in
        self.stats = WorkerStats(0)  # its gauges, as of its last heartbeat
        self.ready = False  # it said it serves
        self.failure = ""  # why it could not start, as it said
        self.retired = False  # to drain (stop or reload): not restarted
        self.told = False  # SIGTERM sent
        self.gone = False


class Supervisor:
    def __init__(self, path: str, ready: RunConfig, workers: int) -> None:
        self.path = path
        self.count = workers
        self.server = ControlServer(ready.config, ready.resolved, admin_token=ready.admin_token)
        self.reactor = self.server.reactor
        self.workers: list[Worker] = []
        self.generation = 0
        self.spawned = 0
        self.pending: deque[int] = deque()  # slots waiting for their worker to be spawned
        self.deaths: Counter[int] = Counter()  # quick deaths in a row, per slot
        self.counts_dir = _counts_dir()
        self.share_path = os.path.join(self.counts_dir, "accept-share")
        self.board = AcceptBoard(self.share_path, workers, create=True)  # relay.net.share
        self.base: dict[Key, list[int]] = {}  # counters of workers that are gone
        self.ghosts: dict[Key, Backend] = {}  # backends a reload removed, still on old workers
        self.server.extra_status = self._status
        self.server.extra_problems = self._shortfall

    def open(self) -> None:
        self.server.open()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        r = self.reactor
        for signum in (signal.SIGTERM, signal.SIGINT):
            r.add_signal_handler(signum, self.handle_stop)
        r.add_signal_handler(signal.SIGHUP, self.handle_reload)
        r.add_signal_handler(signal.SIGCHLD, self.handle_child)
        for listener in self.server.listeners:
            listener.group.publish = self._publish
        self.server.on_beat = self._sum
        self.server.start()
        self.spawn_all()
        log.info("supervisor_started", workers=self.count, pid=os.getpid())
        try:
            r.run()
        finally:
            for worker in self.workers:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            self.server.close()
            self.board.close()
            shutil.rmtree(self.counts_dir, ignore_errors=True)
        return 0

    def spawn_all(self) -> None:
        """A worker per slot, one per loop turn: signals are handled in between."""
        start = not self.pending
        self.pending.extend(range(self.count))
        if start:
            self.reactor.call_later(0, self._spawn_pending)

    def _spawn_pending(self) -> None:
        if self.server.stopping:
            self.pending.clear()
            return
        if self.pending:
            self.spawn(self.pending.popleft())
        if self.pending:
            self.reactor.call_later(0, self._spawn_pending)

    def spawn(self, slot: int) -> None:
        if self.server.stopping:
            return
        parent, child = socket.socketpair()
        fds = {lst.name: lst.sock.fileno() for lst in self.server.listeners if lst.sock}
        self.spawned += 1
        counts = os.path.join(self.counts_dir, f"worker-{self.spawned}")
        try:
            config_fd = self._running_config_fd()
        except OSError as exc:
            parent.close()
            child.close()
            self._spawn_failed(slot, exc)
            return
        args = [sys.executable, "-m", "relay.worker", "--config-fd", str(config_fd),
                "--channel", str(child.fileno()), "--counts", counts,
                "--share", self.share_path, "--slot", str(slot), "--slots", str(self.count)]
        args += [f"--listener={name}={fd}" for name, fd in fds.items()]
        try:
            proc = subprocess.Popen(args, pass_fds=[child.fileno(), config_fd, *fds.values()],
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            child.close()
            self._spawn_failed(slot, exc)
            return
        finally:
            os.close(config_fd)
        child.close()
        holder: list[Worker] = []
        channel = Channel(self.reactor, parent, lambda m: self._message(holder[0], m),
                          lambda: None)
        worker = Worker(slot, self.generation, proc, channel, self.reactor.now, counts)
        holder.append(worker)
        self.workers.append(worker)
        for listener in self.server.listeners:  # the worker starts from the current decisions
            group = listener.group
            channel.send(encode(group.snapshot(None)))
            for backend in group.backends:
                channel.send(encode(group.snapshot(backend)))
        log.info("worker_started", slot=slot, pid=proc.pid, generation=self.generation)

    def _spawn_failed(self, slot: int, exc: OSError) -> None:
        log.error("worker_spawn_failed", slot=slot, error=str(exc), retry_in=1.0)
        self.reactor.call_later(1.0, lambda: self.spawn(slot))

    def _running_config_fd(self) -> int:
        """A descriptor holding the configuration as this process runs it: its validated
        text and every address as resolved here (a worker re-resolves nothing)."""
        server = self.server
        resolved = {}
        for listener in server.listeners:
            resolved[str(listener.config.listen)] = listener.address
            for backend in listener.group.backends:
                resolved[str(backend.config.address)] = backend.target
        fd = os.memfd_create("relay-config")
        try:
            data = running_config(server.config, resolved)
            while data:
                data = data[os.write(fd, data):]
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError:
            os.close(fd)
            raise
        return fd

    # -- signals -------------------------------------------------------------------

    def handle_stop(self, signum: int) -> None:
        if self.server.stopping:
            for worker in self._alive():  # a worker's second signal resets what it still holds
                worker.proc.send_signal(signal.SIGTERM)
            return
        self.server.stopping = True
        self.pending.clear()
        log.info("shutdown", reason=signal.Signals(signum).name, workers=len(self._alive()))
        for listener in self.server.listeners:
            listener.close()  # the supervisor's copies; workers close theirs on SIGTERM
            listener.group.stop_checks()
        for worker in self._alive():
            worker.retired = True
            self._tell_to_drain(worker)
        grace = self.server.config.runtime.shutdown_grace
        self.reactor.call_later(grace + 10.0, self._kill_stragglers)
        self._maybe_done()

    def _tell_to_drain(self, worker: Worker) -> None:
        worker.told = True
        worker.proc.send_signal(signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        for worker in self._alive():
            log.warning("worker_killed", pid=worker.proc.pid, reason="shutdown_grace passed")
            worker.proc.kill()

    def handle_reload(self, signum: int) -> None:
        """Reload: apply to the supervisor's state, then a new generation of workers starts
        on the new configuration; each old worker drains (its sessions are never cut) once
        the new one of its slot is ready. The loop keeps turning while the new file's names
        are resolved."""
        before = {(lst.name, b.name): b for lst in self.server.listeners
                  for b in lst.group.backends}
        self.server.reload(self.path, functools.partial(self._reloaded, before))

    def _reloaded(self, before: dict[tuple[str, str], Backend], applied: bool) -> None:
        if not applied:
            return
        for listener in self.server.listeners:
            listener.group.publish = self._publish
        after = {(lst.name, b.name) for lst in self.server.listeners for b in lst.group.backends}
        for key, backend in before.items():
            if key not in after:
                backend.remote_pending = True  # until no worker that knows it is left
                self.ghosts[key] = backend
        for worker in self._alive():
            worker.retired = True
        self.generation += 1
        self.pending.clear()
        self.spawn_all()

    def handle_child(self, signum: int) -> None:
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None or worker.gone:
                continue
            worker.gone = True
            worker.channel.close()
            self._retire_counters(worker)
            self.workers.remove(worker)
            if all(w.slot != worker.slot for w in self._alive()):  # none waits for the dead
                self.board.values[worker.slot] = ABSENT
            uptime = self.reactor.now - worker.started
            if not worker.retired:
                self.deaths[worker.slot] = self.deaths[worker.slot] + 1 if uptime < QUICK_DEATH \
                    else 0
                delay = min(MAX_BACKOFF, 0.5 * 2 ** (self.deaths[worker.slot] - 1)) \
                    if self.deaths[worker.slot] else 0.0
                if worker.ready:
                    log.warning("worker_died", slot=worker.slot, pid=worker.proc.pid, code=code,
                                uptime=round(uptime, 3), retry_in=delay)
                else:
                    log.error("worker_start_failed", slot=worker.slot, pid=worker.proc.pid,
                              reason=worker.failure or f"exited with code {code} before serving",
                              retry_in=delay)
                self.reactor.call_later(delay, functools.partial(self.spawn, worker.slot))
            else:
                log.info("worker_exited", slot=worker.slot, pid=worker.proc.pid, code=code)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.server.stopping and not self._alive():
            self.reactor.stop()

    def _alive(self) -> list[Worker]:
        return [w for w in self.workers if not w.gone]

    def _shortfall(self) -> list[str]:
        """/readyz: fewer workers serving than configured (a retired one serves until its
        successor is ready)."""
        serving = {w.slot for w in self._alive() if w.ready and not w.told}
        if len(serving) < self.count and not self.server.stopping:
            return [f"workers: {len(serving)} of {self.count} running"]
        return []

    # -- messages from workers ----------------------------------------------------

    def _message(self, worker: Worker, raw: dict[str, Any]) -> None:
        try:
            message = decode(raw)
        except BadMessage as exc:  # a worker's bug, or not a worker: never ours to crash on
            log.warning("worker_message_invalid", slot=worker.slot, pid=worker.proc.pid,
                        error=str(exc))
            return
        match message:
            case WorkerStats():
                worker.stats = message
            case Ready():
                worker.ready = True
                for old in self._alive():  # its predecessor in the slot may drain now
                    if old.slot == worker.slot and old.retired and not old.told:
                        self._tell_to_drain(old)
            case Failed(reason):
                worker.failure = reason
            case PassiveFailure(lname, bname, error):  # a worker's connect failed
                found = self._backend(lname, bname)
                if found is not None:
                    found[0].traffic_failed(found[1], error)
            case CheckWanted(lname, bname):  # a session ended in a way only a check can judge
                found = self._backend(lname, bname)
                if found is not None:
                    found[0].request_check(found[1])
            case Health():
                log.warning("worker_message_invalid", slot=worker.slot, pid=worker.proc.pid,
                            error="health decisions are the supervisor's")

    def _backend(self, listener_name: str, backend_name: str) -> tuple[BackendGroup, Backend] | None:
        listener = self.server.by_name.get(listener_name)
        backend = listener.group.by_name.get(backend_name) if listener is not None else None
        if listener is None or backend is None:
            return None  # removed by a reload meanwhile
        return listener.group, backend

    def _publish(self, group: BackendGroup, backend: Backend | None) -> None:
        message = encode(group.snapshot(backend))
        for worker in self._alive():
            worker.channel.send(message)

    # -- counters -------------------------------------------------------------------

    def _retire_counters(self, worker: Worker) -> None:
        """A gone worker's counters stay in the totals (read from its file, then the file
        goes); its gauges (sessions) do not."""
        for key, values in _worker_counts(worker.counts).items():
            _add(self.base, key, values)
        try:
            os.unlink(worker.counts)
        except OSError:
            pass
        worker.stats = WorkerStats(0)

    def _sum(self) -> None:
        """Totals over workers into the supervisor's listener and backend objects."""
        total: dict[Key, list[int]] = {key: list(v) for key, v in self.base.items()}
        live = self._alive()
        known: set[Key] = set()
        for worker in live:
            runs = _worker_counts(worker.counts)
            known.update(runs)
            for key, values in runs.items():
                _add(total, key, values)
        self.server.remote_sessions = sum(w.stats.sessions for w in live)
        active: Counter[Key] = Counter()
        for worker in live:
            active.update(worker.stats.backends)
        for listener in self.server.listeners:
            if (listener.name, None) in total:
                listener.counts = total[(listener.name, None)]
            for backend in listener.group.backends:
                key = (listener.name, backend.name)
                if key in total:
                    backend.counts = total[key]
                backend.remote_sessions = active[key]
        for key, ghost in list(self.ghosts.items()):
            if key in total:
                ghost.counts = total[key]
            ghost.remote_sessions = active[key]
            if key not in known:  # no live worker has it: its counts are final
                ghost.remote_pending = False
                del self.ghosts[key]
                self.base.pop(key, None)

    def _status(self) -> dict[str, Any]:
        return {"workers": [{"pid": w.proc.pid, "slot": w.slot, "generation": w.generation,
                             "ready": w.ready, "sessions": w.stats.sessions}
                            for w in self._alive()]}


def _worker_counts(path: str) -> dict[Key, list[int]]:
    return {key: settled(values) if key[1] is not None else values
            for key, values in read_counts(path).items()}


def _add(into: dict[Key, list[int]], key: Key, values: list[int]) -> None:
    have = into.get(key)
    if have is None or len(have) != len(values):
        into[key] = list(values)
    else:
        into[key] = [a + b for a, b in zip(have, values, strict=True)]


def _counts_dir() -> str:
    """Where workers keep their counters: memory-backed /dev/shm where it can be written (a
    container with a read-only root file system still has it), else the temporary directory."""
    for base in ("/dev/shm", None):
        try:
            return tempfile.mkdtemp(prefix="relay-counts-", dir=base)
        except OSError:
            if base is None:
                raise
    raise AssertionError("unreachable")
