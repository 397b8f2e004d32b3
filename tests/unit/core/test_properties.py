"""Hypothesis drives the whole decision step with random inputs and checks its promises.

The machine feeds the core every kind of input (probe results, session and address
changes, drains from operators and from the drain file, hook and connection reports,
reloads, timers) in random order at random times, performs the effects the way the
shell would, and after every step checks the invariants operators rely on.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from anycast_announcer.config import Config
from anycast_announcer.core import Instant, SidecarCore
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
from anycast_announcer.health import Health
from anycast_announcer.results import ProbeResult
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import ExabgpStatus
from tests.unit.core.helpers import LOG

SERVICES = ("web", "dns")
PEERS = ("10.0.1.1", "10.0.2.1")
ALL = "10.255.0.1/32"
ANY = "10.255.0.2/32"
PREFIXES = (ALL, ANY)
EXABGP = ExabgpStatus(
    pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
)


def _config(bandwidth: float, hook: bool, rise: int) -> Config:
    data: dict[str, Any] = {
        "bgp": {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            "peers": [{"address": peer, "peer_as": 65100} for peer in PEERS],
        },
        "services": [
            {"name": name, "check": {"type": "tcp", "host": "127.0.0.1", "port": 80}, "rise": rise}
            for name in SERVICES
        ],
        "prefixes": [
            {"prefix": ALL, "services": list(SERVICES), "bandwidth_mbps": bandwidth},
            {"prefix": ANY, "services": list(SERVICES), "require": "any"},
        ],
        "drain": {
            "graceful_shutdown_hold": 3,
            "connection_timeout": 10,
            "state_file": "/nonexistent/drain.json",
            **({"hook": {"type": "command", "argv": ["true"]}} if hook else {}),
        },
    }
    for prefix in data["prefixes"]:
        prefix["dampening"] = {"half_life": 5, "max_suppress": 20}
    return Config.model_validate(data)


CONFIGS = [_config(b, h, r) for b in (1000.0, 2500.0) for h in (False, True) for r in (1, 2)]


class DecisionCore(RuleBasedStateMachine):
    """The core plus what a shell would know from performing its effects."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.core = SidecarCore(CONFIGS[0], self._instant(), logger=LOG)
        self.routes: dict[RouteKey, Route] = {}
        self.workers: set[str] = set()
        self.requests = 0
        self.answered: dict[int, int] = {}
        self.drained_since_undrain: set[str] = set()
        self._perform(self.core.start(self._instant()))

    def _instant(self) -> Instant:
        return Instant(self.now, 1e9 + self.now)

    def _perform(self, effects: list[fx.Effect]) -> None:
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

    def _feed(self, item: Input) -> None:
        self._perform(self.core.handle(item, self._instant()))

    def _ask(self) -> int:
        self.requests += 1
        return self.requests

    # -- rules -------------------------------------------------------------------------

    @rule(delta=st.floats(min_value=0, max_value=40, allow_nan=False))
    def time_passes(self, delta: float) -> None:
        self.now += delta
        timer = self.core.get_timer()
        if timer is not None and timer <= self.now:
            self._perform(self.core.handle_timer(self._instant()))

    @rule(service=st.sampled_from(SERVICES), ok=st.booleans())
    def probe(self, service: str, ok: bool) -> None:
        self._feed(ProbeCompleted(service, ProbeResult(ok, 0.001, "x")))

    @rule(peer=st.sampled_from(PEERS), up=st.booleans())
    def session(self, peer: str, up: bool) -> None:
        self._feed(SessionChanged(peer, up, "test"))

    @rule(prefix=st.sampled_from(PREFIXES), present=st.booleans())
    def address(self, prefix: str, present: bool) -> None:
        address = ipaddress.ip_network(prefix).network_address
        self._feed(AddressChanged("lo", address, present))

    @rule(prefixes=st.none() | st.lists(st.sampled_from(PREFIXES), min_size=1, unique=True))
    def drain(self, prefixes: list[str] | None) -> None:
        selected = tuple(prefixes) if prefixes is not None else None
        self._feed(DrainRequested(self._ask(), selected, "maintenance"))

    @rule(prefixes=st.none() | st.lists(st.sampled_from(PREFIXES), min_size=1, unique=True))
    def undrain(self, prefixes: list[str] | None) -> None:
        selected = tuple(prefixes) if prefixes is not None else None
        self._feed(UndrainRequested(self._ask(), selected))
        for prefix in prefixes or PREFIXES:
            self.drained_since_undrain.discard(prefix)

    @rule(present=st.booleans())
    def drain_file(self, present: bool) -> None:
        if not present:  # the file's disappearance is the undrain of the file's drains
            for prefix in self.core.status(self._instant(), EXABGP).prefixes:
                if prefix.drain_origin == "drain_file":
                    self.drained_since_undrain.discard(prefix.prefix)
        self._feed(DrainFileChanged(present))

    @precondition(lambda self: bool(self.workers))
    @rule(data=st.data())
    def hook_finished(self, data: st.DataObject) -> None:
        prefix = data.draw(st.sampled_from(sorted(self.workers)))
        self._feed(DrainHookFinished(prefix, data.draw(st.booleans()), "x"))

    @precondition(lambda self: bool(self.workers))
    @rule(data=st.data())
    def connections(self, data: st.DataObject) -> None:
        prefix = data.draw(st.sampled_from(sorted(self.workers)))
        self._feed(ConnectionsCounted(prefix, data.draw(st.integers(min_value=0, max_value=3))))

    @rule(config=st.sampled_from(CONFIGS))
    def reload(self, config: Config) -> None:
        self._feed(ConfigLoaded(config, self._ask()))

    # -- invariants --------------------------------------------------------------------

    def _announced(self) -> set[str]:
        return {key.prefix for key in self.routes}

    def _health(self) -> dict[str, Health]:
        return {s.name: Health(s.state) for s in self.core.status(self._instant(), EXABGP).services}

    @invariant()
    def no_route_while_required_services_are_down(self) -> None:
        health = self._health()
        up = [name for name in SERVICES if health[name] is Health.UP]
        if len(up) < len(SERVICES):
            assert ALL not in self._announced()
        if not up:
            assert ANY not in self._announced()

    @invariant()
    def routes_only_where_the_address_is_and_sessions_are_up(self) -> None:
        status = self.core.status(self._instant(), EXABGP)
        present = {p.prefix for p in status.prefixes if p.address_present}
        up = {p.address for p in status.peers if p.state == "up"}
        for key in self.routes:
            assert key.prefix in present
            assert key.peer in up

    @invariant()
    def a_withdrawn_route_is_never_reported_as_announced(self) -> None:
        for prefix in self.core.status(self._instant(), EXABGP).prefixes:
            if prefix.prefix in self._announced():
                assert prefix.state in ("announced", "draining"), prefix
            else:
                assert prefix.state != "announced" or not prefix.routes, prefix

    @invariant()
    def a_drained_prefix_stays_out_until_undrain(self) -> None:
        for prefix in self.core.status(self._instant(), EXABGP).prefixes:
            if prefix.drain_phase == "withdrawn":
                self.drained_since_undrain.add(prefix.prefix)
            if prefix.prefix in self.drained_since_undrain and prefix.drain_phase != "none":
                assert prefix.prefix not in self._announced()

    @invariant()
    def dampening_never_delays_a_withdrawal(self) -> None:
        for name, decision in self.core.decisions.items():
            if decision.state == "dampened":
                assert name not in self._announced()

    @invariant()
    def workers_run_exactly_in_the_phases_that_need_them(self) -> None:
        phases = {
            p.prefix: p.drain_phase for p in self.core.status(self._instant(), EXABGP).prefixes
        }
        wanted = {
            name for name, phase in phases.items() if phase in ("hook", "waiting_connections")
        }
        assert self.workers == wanted

    @invariant()
    def every_request_is_answered_exactly_once(self) -> None:
        assert self.answered == dict.fromkeys(range(1, self.requests + 1), 1)


DecisionCore.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestDecisionCore = DecisionCore.TestCase
