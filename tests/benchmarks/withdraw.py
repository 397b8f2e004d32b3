"""Withdraw and announce latency: service stopped -> prefix gone from leaf1's and spine1's FIB.

One server (srv1) announces the anycast prefix; each trial waits a random fraction of
an interval (so the stop lands anywhere in the probe schedule), stops the service
(``kill``: SIGKILL; ``graceful``: SIGTERM, on which it closes its listener and exits),
and stamps the FIB changes with ``ip monitor route`` in leaf1 and spine1. For the
sidecar its JSON log splits the time into detection (stop -> ``service_state_changed``
down), decision -> ExaBGP ack (-> ``route_withdrawn``) and ack -> leaf FIB, and names the
detection ``source`` that took the service down (``listener`` for the sock_diag destroy
event, ``probe`` for the polling backstop). Then the service restarts and the announce
latency (listening -> FIB) is measured the same way. ExaBGP's healthcheck logs nothing
we could time, so its figures are end to end.

The sidecar runs with its detection defaults: its check targets the anycast address
literal, which is on srv1's ``lo``, so the listener watch applies (the JSON records the
targets the sidecar said it watches), and ``fast_interval`` is ``interval / 5``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from tests.benchmarks.common import (
    SERVICE_PORT,
    Announcer,
    CheckSettings,
    HealthcheckRunner,
    LabService,
    RouteWatch,
    SidecarRunner,
    kernel_nexthops,
    log_time,
    summary,
    tcp_services,
)

SETTINGS = (
    CheckSettings(interval=1.0, fall=3, rise=3, timeout=0.5),
    CheckSettings(interval=0.2, fall=2, rise=2, timeout=0.1),
)
STOPS = ("kill", "graceful")
"""How the service is stopped: SIGKILL, or SIGTERM (it closes its listener and exits)."""

SAMPLE_KEYS = (
    "withdraw_leaf",
    "withdraw_spine",
    "detection",
    "decision_to_ack",
    "ack_to_leaf_fib",
    "announce_leaf",
    "announce_spine",
)


def announcer_for(system: str, lab: Lab, settings: CheckSettings, workdir: Path) -> Announcer:
    """srv1's announcer of one service on the anycast address's SERVICE_PORT."""
    if system == "sidecar":
        return SidecarRunner(lab, 1, tcp_services(1, settings, port=SERVICE_PORT), workdir)
    return HealthcheckRunner(lab, 1, [SERVICE_PORT], settings, workdir)


@dataclass
class _Trials:
    """What the trials of one row have gathered so far."""

    samples: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in SAMPLE_KEYS}
    )
    sources: list[str] = field(default_factory=list)
    missed: int = 0
    misses: list[str] = field(default_factory=list)


def run_one(
    lab: Lab,
    system: str,
    settings: CheckSettings,
    trials: int,
    workdir: Path,
    stop: str = "kill",
) -> dict[str, Any]:
    """``trials`` stop/restart cycles of one system at one setting."""
    if stop not in STOPS:
        raise ValueError(f"stop: {stop!r} is not one of {STOPS}")
    budget = settings.interval * (max(settings.fall, settings.rise) + 2) + 10
    service = LabService(lab, "srv1", workdir)
    announcer = announcer_for(system, lab, settings, workdir)
    leaf, spine = RouteWatch(lab, "leaf1"), RouteWatch(lab, "spine1")
    gathered = _Trials()
    watched: list[str] = []
    started = time.time()  # every sidecar run in srv1 appends to one log file
    try:
        service.start()
        announcer.start()
        if spine.wait(True, 60) is None:
            raise TimeoutError(f"{system}: spine1 never learnt the prefix")
        if isinstance(announcer, SidecarRunner):
            watched = watched_targets(announcer, started)
        for _ in range(trials):
            time.sleep(0.5 + random.uniform(0, settings.interval))
            _trial(lab, announcer, service, stop, (leaf, spine), budget, gathered=gathered)
    finally:
        announcer.stop()
        service.kill()
        leaf.close()
        spine.close()
    return {
        "system": system,
        "stop": stop,
        "interval": settings.interval,
        "fall": settings.fall,
        "rise": settings.rise,
        "timeout": settings.timeout,
        "trials": trials,
        "missed": gathered.missed,
        "misses": gathered.misses,
        "watched_targets": watched,
        "sources": dict(Counter(gathered.sources)),
        "samples": gathered.samples,
        "summary": {key: summary(values) for key, values in gathered.samples.items() if values},
    }


def _trial(
    lab: Lab,
    announcer: Announcer,
    service: LabService,
    stop: str,
    watches: tuple[RouteWatch, RouteWatch],
    budget: float,
    *,
    gathered: _Trials,
) -> None:
    """One stop, withdraw, restart, announce cycle."""
    leaf, spine = watches
    samples = gathered.samples
    leaf.clear()
    spine.clear()
    stopped = time.time()
    if stop == "kill":
        service.kill()
    else:
        service.stop()
    leaf_gone = leaf.wait(False, budget)
    spine_gone = spine.wait(False, 5)
    if leaf_gone is None or spine_gone is None:
        gathered.missed += 1
        gathered.misses.append(_miss("withdraw", lab, announcer, leaf_gone, spine_gone))
    else:
        samples["withdraw_leaf"].append(leaf_gone - stopped)
        samples["withdraw_spine"].append(spine_gone - stopped)
        if isinstance(announcer, SidecarRunner):
            source = _split_sidecar(announcer, stopped, leaf_gone, samples)
            gathered.sources.append(source or "unknown")
    leaf.clear()
    spine.clear()
    service.start()
    listening = time.time()
    leaf_back = leaf.wait(True, budget)
    spine_back = spine.wait(True, 5)
    if leaf_back is None or spine_back is None:
        gathered.missed += 1
        gathered.misses.append(_miss("announce", lab, announcer, leaf_back, spine_back))
        return
    samples["announce_leaf"].append(leaf_back - listening)
    samples["announce_spine"].append(spine_back - listening)


def watched_targets(sidecar: SidecarRunner, since: float) -> list[str]:
    """The listener targets the sidecar started after ``since`` said it watches."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [e for e in sidecar.events("listener_watch") if log_time(e) >= since]
        if found:
            return [str(target) for target in found[-1].get("targets", [])]
        time.sleep(0.05)
    return []


def _miss(
    what: str, lab: Lab, announcer: Announcer, leaf: float | None, spine: float | None
) -> str:
    """What we know about a trial that timed out, for the JSON file."""
    detail = (
        f"{what}: leaf {'seen' if leaf else 'not seen'}, spine {'seen' if spine else 'not seen'}"
    )
    detail += f"; leaf1 next hops now {kernel_nexthops(lab, 'leaf1')}"
    if isinstance(announcer, SidecarRunner):
        tail = announcer.events("service_state_changed")[-2:]
        tail += announcer.events("route_announced")[-1:]
        detail += f"; sidecar: {tail}"
    return detail


def _split_sidecar(
    sidecar: SidecarRunner, stopped: float, leaf_gone: float, samples: dict[str, list[float]]
) -> str | None:
    """Split the sidecar's time from its log; the detection source that took it down."""
    downs = [
        e
        for e in sidecar.events("service_state_changed")
        if e.get("new") == "down" and log_time(e) >= stopped
    ]
    acks = [log_time(e) for e in sidecar.events("route_withdrawn") if log_time(e) >= stopped]
    if not downs or not acks:
        return None
    down = log_time(downs[0])
    samples["detection"].append(down - stopped)
    samples["decision_to_ack"].append(acks[0] - down)
    samples["ack_to_leaf_fib"].append(leaf_gone - acks[0])
    return str(downs[0].get("source", "unknown"))


def run(
    lab: Lab,
    trials: int,
    workdir: Path,
    settings: tuple[CheckSettings, ...] = SETTINGS,
    stops: tuple[str, ...] = STOPS,
    sidecar_trials: int | None = None,
) -> list[dict[str, Any]]:
    """Both systems at every setting, for every way of stopping the service.

    ``sidecar_trials`` (default ``trials``): the sidecar's trials take about a second, so
    its rows can afford the hundred samples a p99 needs to be more than the maximum.
    """
    return [
        run_one(
            lab,
            system,
            setting,
            (sidecar_trials or trials) if system == "sidecar" else trials,
            workdir,
            stop,
        )
        for stop in stops
        for setting in settings
        for system in ("sidecar", "healthcheck")
    ]
