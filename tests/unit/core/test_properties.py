"""Hypothesis drives the whole decision step with random inputs and checks its promises.

The machine feeds the core every kind of input (probe results, session and address
changes, drains from operators and from the drain file, hook and connection reports,
reloads, timers) in random order at random times, performs the effects the way the
shell would, and after every step checks the invariants operators rely on.

Reloads move between configs with different prefix and service sets (a prefix or a
service appears, disappears, comes back), with or without the drain file; the shell
may shut the core down (after which every input is refused) or restart it from the
drain state file it was told to write.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from anycast_announcer.config import Config
from anycast_announcer.core import CoreClosedError, Instant, SidecarCore
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    AddressChanged,
    ConfigLoaded,
    ConnectionsCounted,
    DrainFileChanged,
    DrainHookFinished,
    DrainRequested,
    Input,
    ProbeCompleted,
    SessionChanged,
    UndrainRequested,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.health import Health
from anycast_announcer.results import ProbeResult
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import ExabgpStatus
from tests.unit.core.helpers import LOG

SERVICES = ("web", "dns", "api")
"""Every service name some config uses; each config probes a subset."""
PEERS = ("10.0.1.1", "10.0.2.1")
ALL = "10.255.0.1/32"
ANY = "10.255.0.2/32"
THIRD = "10.255.0.3/32"
PREFIXES = (ALL, ANY, THIRD)
"""Every prefix some config announces; ``ALL`` requires all services, the others any."""
EXABGP = ExabgpStatus(
    pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
)
STATE_FILE = "/nonexistent/drain.json"


def _config(
    bandwidth: float, hook: bool, rise: int, prefixes: tuple[str, ...], services: tuple[str, ...]
) -> Config:
    data: dict[str, Any] = {
        "bgp": {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            "peers": [{"address": peer, "peer_as": 65100} for peer in PEERS],
        },
        "services": [
            {"name": name, "check": {"type": "tcp", "host": "127.0.0.1", "port": 80}, "rise": rise}
            for name in services
        ],
        "prefixes": [
            {
                "prefix": prefix,
                "services": list(services),
                "require": "all" if prefix == ALL else "any",
                "bandwidth_mbps": bandwidth,
                "dampening": {"half_life": 5, "max_suppress": 20},
            }
            for prefix in prefixes
        ],
        "drain": {
            "graceful_shutdown_hold": 3,
            "connection_timeout": 10,
            "state_file": STATE_FILE,
            **({"hook": {"type": "command", "argv": ["true"]}} if hook else {}),
        },
    }
    return Config.model_validate(data)


SHAPES = [
    ((ALL, ANY), ("web", "dns")),
    ((ALL,), ("web", "dns")),
    ((ANY, THIRD), ("web", "dns")),
    ((ALL, ANY, THIRD), ("web",)),
    ((ANY,), ("dns", "api")),
]
"""(prefixes, services) sets the reloads move between."""
CONFIGS = [
    _config(b, h, r, prefixes, services)
    for prefixes, services in SHAPES
    for b in (1000.0, 2500.0)
    for h in (False, True)
    for r in (1, 2)
]


def _changing(service: Any) -> bool:
    """Whether a streak is changing the service's state (mirrors ServiceHealth.changing)."""
    if service.consecutive_failures:
        return bool(service.state != "down")
    return bool(service.consecutive_successes > 0 and service.state != "up")


class DecisionCore(RuleBasedStateMachine):
    """The core plus what a shell would know from performing its effects."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.requests = 0
        self.answered: dict[int, int] = {}
        self.drained_since_undrain: set[str] = set()
        self.persisted: tuple[PersistedDrain, ...] = ()
        """The drain state file as the shell last wrote it."""
        self.drain_file = False
        self.undrained_under_file: set[str] = set()
        """Prefixes an operator undrained while the drain file existed (allowed)."""
        self.closed = False
        self._step = 0
        self._cached: tuple[tuple[int, float], Any] | None = None
        self._boot(CONFIGS[0])

    def _boot(self, config: Config) -> None:
        """A (re)start: a new core from the config and the drain state file."""
        self.core = SidecarCore(config, self._instant(), logger=LOG, restored=self.persisted)
        self.routes: dict[RouteKey, Route] = {}
        self.workers: set[str] = set()
        self.fast: dict[str, bool] = {}
        """Each service's cadence as the scheduler was last told (slow unless told)."""
        self._perform(self.core.start(self._instant()))
        self.undrained_under_file = set()
        if self.drain_file:
            self._feed(DrainFileChanged(True))

    def _instant(self) -> Instant:
        return Instant(self.now, 1e9 + self.now)

    def _perform(self, effects: list[fx.Effect]) -> None:
        self._step += 1
        for effect in effects:
            if isinstance(effect, fx.SyncRoutes):
                self.routes = dict(effect.routes)
            elif isinstance(effect, fx.StartDrainWorker):
                assert effect.prefix not in self.workers, "worker started twice"
                self.workers.add(effect.prefix)
            elif isinstance(effect, fx.StopDrainWorker):
                assert effect.prefix in self.workers, "stopped a worker that was not running"
                self.workers.discard(effect.prefix)
            elif isinstance(effect, fx.Reply):
                self.answered[effect.request] = self.answered.get(effect.request, 0) + 1
            elif isinstance(effect, fx.PersistDrains):
                self.persisted = effect.drains
            elif isinstance(effect, fx.ScheduleProbes):
                # As the scheduler does: a service no longer probed forgets its cadence.
                names = {service.name for service in effect.services}
                self.fast = {n: f for n, f in self.fast.items() if n in names}
            elif isinstance(effect, fx.ProbeCadence):
                self.fast[effect.service] = effect.fast

    def _feed(self, item: Input) -> None:
        self._perform(self.core.handle(item, self._instant()))

    def _ask(self) -> int:
        self.requests += 1
        return self.requests

    def _status(self) -> Any:
        """The core's status, built once per step (the invariants all read it)."""
        key = (self._step, self.now)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.core.status(self._instant(), EXABGP))
        return self._cached[1]

    # -- rules -------------------------------------------------------------------------

    @precondition(lambda self: not self.closed)
    @rule(delta=st.floats(min_value=0, max_value=40, allow_nan=False))
    def time_passes(self, delta: float) -> None:
        self.now += delta
        timer = self.core.get_timer()
        if timer is not None and timer <= self.now:
            self._perform(self.core.handle_timer(self._instant()))

    @precondition(lambda self: not self.closed)
    @rule(service=st.sampled_from(SERVICES), ok=st.booleans())
    def probe(self, service: str, ok: bool) -> None:
        self._feed(ProbeCompleted(service, ProbeResult(ok, 0.001, "x")))

    @precondition(lambda self: not self.closed)
    @rule(peer=st.sampled_from(PEERS), up=st.booleans())
    def session(self, peer: str, up: bool) -> None:
        self._feed(SessionChanged(peer, up, "test"))

    @precondition(lambda self: not self.closed)
    @rule(prefix=st.sampled_from(PREFIXES), present=st.booleans())
    def address(self, prefix: str, present: bool) -> None:
        address = ipaddress.ip_network(prefix).network_address
        self._feed(AddressChanged("lo", address, present))

    @precondition(lambda self: not self.closed)
    @rule(prefixes=st.none() | st.lists(st.sampled_from(PREFIXES), min_size=1, unique=True))
    def drain(self, prefixes: list[str] | None) -> None:
        selected = tuple(prefixes) if prefixes is not None else None
        self._feed(DrainRequested(self._ask(), selected, "maintenance"))

    @precondition(lambda self: not self.closed)
    @rule(prefixes=st.none() | st.lists(st.sampled_from(PREFIXES), min_size=1, unique=True))
    def undrain(self, prefixes: list[str] | None) -> None:
        configured = {p.prefix for p in self._status().prefixes}
        selected = tuple(prefixes) if prefixes is not None else None
        self._feed(UndrainRequested(self._ask(), selected))
        if prefixes is None or set(prefixes) <= configured:  # else refused as a whole
            for prefix in prefixes or PREFIXES:
                self.drained_since_undrain.discard(prefix)
                if self.drain_file:
                    self.undrained_under_file.add(prefix)

    @precondition(lambda self: not self.closed)
    @rule(present=st.booleans())
    def drain_file_changes(self, present: bool) -> None:
        if not present:  # the file's disappearance is the undrain of the file's drains
            for prefix in self._status().prefixes:
                if prefix.drain_origin == "drain_file":
                    self.drained_since_undrain.discard(prefix.prefix)
        if present != self.drain_file:
            self.undrained_under_file = set()
        self.drain_file = present
        self._feed(DrainFileChanged(present))

    @precondition(lambda self: not self.closed and bool(self.workers))
    @rule(data=st.data())
    def hook_finished(self, data: st.DataObject) -> None:
        prefix = data.draw(st.sampled_from(sorted(self.workers)))
        self._feed(DrainHookFinished(prefix, data.draw(st.booleans()), "x"))

    @precondition(lambda self: not self.closed and bool(self.workers))
    @rule(data=st.data())
    def connections(self, data: st.DataObject) -> None:
        prefix = data.draw(st.sampled_from(sorted(self.workers)))
        self._feed(ConnectionsCounted(prefix, data.draw(st.integers(min_value=0, max_value=3))))

    @precondition(lambda self: not self.closed)
    @rule(config=st.sampled_from(CONFIGS))
    def reload(self, config: Config) -> None:
        before = {p.prefix for p in self._status().prefixes}
        self._feed(ConfigLoaded(config, self._ask()))
        for gone in before - {str(p.prefix) for p in config.prefixes}:
            self.drained_since_undrain.discard(gone)  # a removed prefix's drain is over

    @precondition(lambda self: not self.closed)
    @rule()
    def shutdown(self) -> None:
        self._perform(self.core.shutdown(self._instant()))
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule(service=st.sampled_from(SERVICES))
    def input_after_shutdown(self, service: str) -> None:
        with pytest.raises(CoreClosedError):
            self._feed(ProbeCompleted(service, ProbeResult(True, 0.001, "x")))
        with pytest.raises(CoreClosedError):
            self._perform(self.core.handle_timer(self._instant()))
        assert self.core.shutdown(self._instant()) == []

    @rule(config=st.sampled_from(CONFIGS), delta=st.floats(min_value=0, max_value=40))
    def restart(self, config: Config, delta: float) -> None:
        """The process restarts (after a shutdown or a crash) with a config, reading the
        drain state file; the drain file, if there, is seen at once."""
        self.now += delta
        configured = {str(p.prefix) for p in config.prefixes}
        self.drained_since_undrain &= configured
        self.closed = False
        self._boot(config)

    # -- invariants --------------------------------------------------------------------

    def _announced(self) -> set[str]:
        return {key.prefix for key in self.routes}

    def _health(self) -> dict[str, Health]:
        return {s.name: Health(s.state) for s in self._status().services}

    @invariant()
    def no_route_while_required_services_are_down(self) -> None:
        health = self._health()
        for prefix in self._status().prefixes:
            up = [name for name in prefix.services if health[name] is Health.UP]
            needed = len(prefix.services) if prefix.require == "all" else 1
            if len(up) < needed:
                assert prefix.prefix not in self._announced(), prefix

    @invariant()
    def routes_only_where_the_address_is_and_sessions_are_up(self) -> None:
        status = self._status()
        present = {p.prefix for p in status.prefixes if p.address_present}
        up = {p.address for p in status.peers if p.state == "up"}
        for key in self.routes:
            assert key.prefix in present
            assert key.peer in up

    @invariant()
    def a_withdrawn_route_is_never_reported_as_announced(self) -> None:
        for prefix in self._status().prefixes:
            if prefix.prefix in self._announced():
                assert prefix.state in ("announced", "draining"), prefix
            else:
                assert prefix.state != "announced" or not prefix.routes, prefix

    @invariant()
    def a_drained_prefix_stays_out_until_undrain(self) -> None:
        for prefix in self._status().prefixes:
            if prefix.drain_phase == "withdrawn":
                self.drained_since_undrain.add(prefix.prefix)
            if prefix.prefix in self.drained_since_undrain and prefix.drain_phase != "none":
                assert prefix.prefix not in self._announced()

    @invariant()
    def while_the_drain_file_exists_every_prefix_is_drained(self) -> None:
        if self.drain_file and not self.closed:
            for prefix in self._status().prefixes:
                if prefix.prefix not in self.undrained_under_file:
                    assert prefix.drain_phase != "none", prefix
                if prefix.drain_origin == "drain_file" and prefix.drain_phase == "withdrawn":
                    assert prefix.prefix not in self._announced()

    @invariant()
    def dampening_never_delays_a_withdrawal(self) -> None:
        for name, decision in self.core.decisions.items():
            if decision.state == "dampened":
                assert name not in self._announced()

    @invariant()
    def workers_run_exactly_in_the_phases_that_need_them(self) -> None:
        if self.closed:
            assert self.workers == set()
            return
        phases = {p.prefix: p.drain_phase for p in self._status().prefixes}
        wanted = {
            name for name, phase in phases.items() if phase in ("hook", "waiting_connections")
        }
        assert self.workers == wanted

    @invariant()
    def the_probe_cadence_follows_the_streaks(self) -> None:
        """The scheduler probes fast exactly while a streak is changing a state."""
        if self.closed:
            return
        for service in self._status().services:
            assert self.fast.get(service.name, False) == _changing(service), service

    @invariant()
    def persisted_drains_are_the_operators_drains_of_configured_prefixes(self) -> None:
        if self.closed:
            return
        operators = {
            p.prefix
            for p in self._status().prefixes
            if p.drain_origin in ("operator", "restored") and p.drain_phase != "none"
        }
        assert {d.prefix for d in self.persisted} == operators

    @invariant()
    def nothing_is_announced_after_shutdown(self) -> None:
        if self.closed:
            assert self.routes == {}
            assert self.core.get_timer() is None

    @invariant()
    def every_request_is_answered_exactly_once(self) -> None:
        assert self.answered == dict.fromkeys(range(1, self.requests + 1), 1)


DecisionCore.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestDecisionCore = DecisionCore.TestCase
