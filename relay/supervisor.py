"""`workers = N`: one supervisor, N worker processes sharing the listening sockets.

The supervisor binds every listening socket once and hands the same sockets to each
worker (one accept queue per listener: no SO_REUSEPORT, so a worker that dies loses
no queued connection — the others accept them). It alone checks health and serves
the admin API; workers mirror its health decisions over a channel and send their
counters, which it sums for /metrics and /status (a dead worker's counters are kept,
its gauges dropped). It restarts a worker that dies (backoff when it keeps dying),
forwards SIGTERM, reloads on SIGHUP by starting a new generation of workers on the
new configuration while the old one drains, and exits 0 once every worker is gone.
In the shape of gunicorn's arbiter: signal handlers only record; the loop acts.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from typing import Any

from relay.logs import log
from relay.net.backends import Backend, BackendGroup
from relay.net.channel import Channel
from relay.net.server import RelayServer
from relay.runconfig import RunConfig

QUICK_DEATH = 10.0  # a worker that dies sooner than this after its start is restarted with backoff
MAX_BACKOFF = 30.0


class Worker:
    def __init__(self, slot: int, generation: int, proc: subprocess.Popen[bytes],
                 channel: Channel, started: float) -> None:
        self.slot = slot
        self.generation = generation
        self.proc = proc
        self.channel = channel
        self.started = started
        self.stats: dict[str, Any] = {}
        self.retired = False  # told to drain (stop or reload): not restarted
        self.gone = False


class Supervisor:
    def __init__(self, path: str, ready: RunConfig, workers: int) -> None:
        self.path = path
        self.count = workers
        self.server = RelayServer(ready.config, ready.resolved, admin_token=ready.admin_token,
                                  role="control")
        self.reactor = self.server.reactor
        self.workers: list[Worker] = []
        self.generation = 0
        self.deaths: Counter[int] = Counter()  # quick deaths in a row, per slot
        self.base: dict[str, Any] = {}  # counters of workers that are gone
        self.server.extra_status = self._status

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
        for slot in range(self.count):
            self.spawn(slot)
        log.info("supervisor_started", workers=self.count, pid=os.getpid())
        try:
            r.run()
        finally:
            for worker in self.workers:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            self.server.close()
        return 0

    def spawn(self, slot: int) -> None:
        if self.server.stopping:
            return
        parent, child = socket.socketpair()
        fds = {lst.name: lst.sock.fileno() for lst in self.server.listeners if lst.sock}
        args = [sys.executable, "-m", "relay.worker", "--config", self.path,
                "--channel", str(child.fileno())]
        args += [f"--listener={name}={fd}" for name, fd in fds.items()]
        try:
            proc = subprocess.Popen(args, pass_fds=[child.fileno(), *fds.values()],
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            child.close()
            log.error("worker_spawn_failed", slot=slot, error=str(exc))
            self.reactor.call_later(1.0, lambda: self.spawn(slot))
            return
        child.close()
        holder: list[Worker] = []
        channel = Channel(self.reactor, parent, lambda m: self._message(holder[0], m),
                          lambda: None)
        worker = Worker(slot, self.generation, proc, channel, self.reactor.now)
        holder.append(worker)
        self.workers.append(worker)
        for listener in self.server.listeners:  # the worker starts from the current decisions
            group = listener.group
            channel.send(group.snapshot(None))
            for backend in group.backends:
                channel.send(group.snapshot(backend))
        log.info("worker_started", slot=slot, pid=proc.pid, generation=self.generation)

    # -- signals -------------------------------------------------------------------

    def handle_stop(self, signum: int) -> None:
        if self.server.stopping:
            for worker in self._alive():  # a worker's second signal resets what it still holds
                worker.proc.send_signal(signal.SIGTERM)
            return
        self.server.stopping = True
        log.info("shutdown", reason=signal.Signals(signum).name, workers=len(self._alive()))
        for listener in self.server.listeners:
            listener.close()  # the supervisor's copies; workers close theirs on SIGTERM
            listener.group.stop_checks()
        for worker in self._alive():
            worker.retired = True
            worker.proc.send_signal(signal.SIGTERM)
        grace = self.server.config.runtime.shutdown_grace
        self.reactor.call_later(grace + 10.0, self._kill_stragglers)
        self._maybe_done()

    def _kill_stragglers(self) -> None:
        for worker in self._alive():
            log.warning("worker_killed", pid=worker.proc.pid, reason="shutdown_grace passed")
            worker.proc.kill()

    def handle_reload(self, signum: int) -> None:
        """Reload: apply to the supervisor's state, then a new generation of workers starts
        on the new file while the old one drains (its sessions are never cut). The loop
        keeps turning while the new file's names are resolved."""
        self.server.reload(self.path, self._reloaded)

    def _reloaded(self, applied: bool) -> None:
        if not applied:
            return
        for listener in self.server.listeners:
            listener.group.publish = self._publish
        old = self._alive()
        self.generation += 1
        for slot in range(self.count):
            self.spawn(slot)
        for worker in old:
            worker.retired = True
            worker.proc.send_signal(signal.SIGTERM)

    def handle_child(self, signum: int) -> None:
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None or worker.gone:
                continue
            worker.gone = True
            self._retire_counters(worker)
            worker.channel.close()
            self.workers.remove(worker)
            uptime = self.reactor.now - worker.started
            if not worker.retired:
                log.warning("worker_died", slot=worker.slot, pid=worker.proc.pid, code=code,
                            uptime=round(uptime, 3))
                self.deaths[worker.slot] = self.deaths[worker.slot] + 1 if uptime < QUICK_DEATH \
                    else 0
                delay = min(MAX_BACKOFF, 0.5 * 2 ** (self.deaths[worker.slot] - 1)) \
                    if self.deaths[worker.slot] else 0.0
                self.reactor.call_later(delay, functools.partial(self.spawn, worker.slot))
            else:
                log.info("worker_exited", slot=worker.slot, pid=worker.proc.pid, code=code)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.server.stopping and not self._alive():
            self.reactor.stop()

    def _alive(self) -> list[Worker]:
        return [w for w in self.workers if not w.gone]

    # -- messages from workers ----------------------------------------------------

    def _message(self, worker: Worker, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "stats":
            worker.stats = message
        elif kind in ("passive", "check"):
            listener = self.server.by_name.get(str(message.get("l")))
            backend = listener.group.by_name.get(str(message.get("b"))) if listener else None
            if listener is None or backend is None:
                return
            if kind == "passive":  # a worker's connect failed
                listener.group.traffic_failed(backend, str(message.get("error", "")))
            else:  # a worker's session ended in a way only an active check can judge
                listener.group.request_check(backend)

    def _publish(self, group: BackendGroup, backend: Backend | None) -> None:
        message = group.snapshot(backend)
        for worker in self._alive():
            worker.channel.send(message)

    # -- counters -------------------------------------------------------------------

    def _retire_counters(self, worker: Worker) -> None:
        """A gone worker's counters stay in the totals; its gauges (sessions) do not."""
        _merge(self.base, worker.stats, keep_samples=True)
        worker.stats = {}

    def _sum(self) -> None:
        """Totals over workers into the supervisor's listener and backend objects."""
        total: dict[str, Any] = {}
        _merge(total, self.base, keep_samples=True)
        live = self._alive()
        for worker in live:
            _merge(total, worker.stats, keep_samples=True)
            _drop_samples(worker.stats)
        self.server.remote_sessions = sum(w.stats.get("sessions", 0) for w in live)
        active: Counter[tuple[str, str]] = Counter()
        for worker in live:
            for lname, per_backend in worker.stats.get("backends", {}).items():
                for bname, b in per_backend.items():
                    active[(lname, bname)] += b.get("active", 0)
        for listener in self.server.listeners:
            lt = total.get("listeners", {}).get(listener.name, {})
            listener.accepted = lt.get("accepted", 0)
            listener.rejected = Counter(lt.get("rejected", {}))
            listener.group.hedge_outcomes = Counter(lt.get("hedges", {}))
            listener.closed_durations.extend(lt.get("durations", []))
            for backend in listener.group.backends:
                bt = total.get("backends", {}).get(listener.name, {}).get(backend.name, {})
                backend.bytes_up = bt.get("up", 0)
                backend.bytes_down = bt.get("down", 0)
                backend.connect_errors = Counter(bt.get("errors", {}))
                backend.connect_times.extend(bt.get("connect", []))
                backend.remote_active = active[(listener.name, backend.name)]
        _drop_samples(self.base)  # counted once: the histograms have them now

    def _status(self) -> dict[str, Any]:
        return {"workers": [{"pid": w.proc.pid, "slot": w.slot, "generation": w.generation,
                             "sessions": w.stats.get("sessions", 0)} for w in self._alive()]}


def _drop_samples(stats: dict[str, Any]) -> None:
    """Empty the histogram samples of `stats`, keeping its counters."""
    for lt in stats.get("listeners", {}).values():
        lt["durations"] = []
    for per_backend in stats.get("backends", {}).values():
        for b in per_backend.values():
            b["connect"] = []


def _merge(into: dict[str, Any], stats: dict[str, Any], keep_samples: bool) -> None:
    """Add one worker's cumulative counters (and, if asked, its samples) into `into`."""
    for lname, lt in stats.get("listeners", {}).items():
        dst = into.setdefault("listeners", {}).setdefault(
            lname, {"accepted": 0, "rejected": {}, "hedges": {}, "durations": []})
        dst["accepted"] += lt.get("accepted", 0)
        for field in ("rejected", "hedges"):
            for key, n in lt.get(field, {}).items():
                dst[field][key] = dst[field].get(key, 0) + n
        if keep_samples:
            dst["durations"] += lt.get("durations", [])
    for lname, per_backend in stats.get("backends", {}).items():
        for bname, b in per_backend.items():
            dst = into.setdefault("backends", {}).setdefault(lname, {}).setdefault(
                bname, {"up": 0, "down": 0, "errors": {}, "connect": []})
            dst["up"] += b.get("up", 0)
            dst["down"] += b.get("down", 0)
            for reason, n in b.get("errors", {}).items():
                dst["errors"][reason] = dst["errors"].get(reason, 0) + n
            if keep_samples:
                dst["connect"] += b.get("connect", [])
