"""DNS discovery (product.md section 9): the edge of relay.core.discovery.

A backend with discover = "dns" is a template: the group holds one backend per A/AAAA
record of its name, named "<name>/<address>", with the template's tier and weight. The
name is looked up again every resolve_interval on the Resolver's threads (never on the
loop); what relay.core.discovery.diff decides is carried out on the group: new records
become backends (health from `initial`, checks start), vanished ones leave the group
(no new sessions; open ones finish, and relay.metrics keeps their series until then), and
unchanged ones keep their health. A failed lookup keeps the last good answer; it is logged
once and counted in relay_backend_resolve_failures_total of every backend the name stands
for. Only the deciding group discovers (runtime.workers must be 1).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from relay.config.model import Address, BackendConfig
from relay.core.discovery import LookupLog, diff, discovered_name
from relay.logs import log
from relay.net.backends import Backend, BackendGroup
from relay.net.resolve import ResolveError, SockAddr

if TYPE_CHECKING:
    from relay.net.timers import Timer


class DnsDiscovery:
    """The backends one discover = "dns" template stands for, kept up to date."""

    def __init__(self, group: BackendGroup, template: BackendConfig,
                 members: dict[str, Backend]) -> None:
        self.group = group
        self.template = template
        self.members = members  # address text -> its backend in the group
        self.timer: Timer | None = None
        self.asking = False  # a lookup is under way (never two at once)
        self.stopped = True
        self.lookup_log = LookupLog()
        self.failures = 0

    def start(self) -> None:
        """Look the name up now (start-up gave only its first address), then every interval."""
        self.stopped = False
        self._tick()

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        self.timer = None
        resolver = self.group.resolver
        if self.stopped or resolver is None:
            return
        if not self.asking:
            self.asking = True
            resolver.lookup_every(self.template.address, self._answered)
        self.timer = self.group.reactor.call_later(self.template.resolve_interval, self._tick)

    def _answered(self, outcome: tuple[SockAddr, ...] | ResolveError) -> None:
        self.asking = False
        if self.stopped:
            return
        group, name = self.group, self.template.name
        if isinstance(outcome, ResolveError):
            self.failures += 1
            for backend in self.members.values():
                backend.resolve_failures += 1
            if self.lookup_log.failed():
                log.warning("discovery_failed", listener=group.listener_name, backend=name,
                            error=str(outcome), kept=sorted(self.members))
            return
        if self.lookup_log.answered():
            log.info("discovery_recovered", listener=group.listener_name, backend=name)
        answer = {target.text: target for target in outcome}
        change = diff(self.members, answer)
        if not change.changed:
            return
        for address in change.add:  # (one tier refresh for the whole answer, after the log)
            self.members[address] = backend = self._member(answer[address])
            group.add_backend(backend, refresh=False)
        for address in change.drain:
            group.remove_backend(self.members.pop(address), refresh=False)
        log.info("discovery_change", listener=group.listener_name, backend=name,
                 added=list(change.add), drained=list(change.drain), kept=list(change.keep))
        if group.note is not None:
            group.note("discovery_change", listener=group.listener_name, backend=name,
                       added=len(change.add), drained=len(change.drain))
        group.refresh_tiers()

    def _member(self, target: SockAddr) -> Backend:
        return Backend(member_config(self.template, target), target, self.group.config)


def member_config(template: BackendConfig, target: SockAddr) -> BackendConfig:
    return replace(template, name=discovered_name(template.name, target.text),
                   address=Address(target.sockaddr[0], target.sockaddr[1]), discover="off")


def expand(group: BackendGroup,
           previous: dict[str, DnsDiscovery] | None = None) -> dict[str, DnsDiscovery]:
    """Replace each discover = "dns" backend of `group` by the backends it stands for: those
    an earlier discovery of the same name found (a reload: they keep their health), or, at
    start, one for the address start-up resolved. The discoveries, by template name."""
    discoveries: dict[str, DnsDiscovery] = {}
    backends: list[Backend] = []
    for backend in group.backends:
        template = backend.config
        if template.discover != "dns":
            backends.append(backend)
            continue
        old = (previous or {}).get(template.name)
        if old is not None and old.template.address == template.address and old.members:
            members = old.members
            for member in members.values():
                member.reconfigure(member_config(template, member.target), member.target,
                                   group.config)
        else:
            seed = Backend(member_config(template, backend.target), backend.target, group.config,
                           backend.health)
            members = {backend.target.text: seed}
        discovery = DnsDiscovery(group, template, members)
        if old is not None:
            discovery.lookup_log, discovery.failures = old.lookup_log, old.failures
        discoveries[template.name] = discovery
        backends.extend(members.values())
    if discoveries:
        group.backends[:] = backends
        group.by_name = {b.name: b for b in backends}
    return discoveries


__all__ = ["DnsDiscovery", "expand", "member_config"]
