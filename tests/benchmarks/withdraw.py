"""Withdraw and announce latency: service killed -> prefix gone from leaf1's and spine1's FIB.

One server (srv1) announces the anycast prefix; each trial waits a random fraction of
an interval (so the kill lands anywhere in the probe schedule), kills the service, and
stamps the FIB changes with ``ip monitor route`` in leaf1 and spine1. For the sidecar its
JSON log splits the time into detection (kill -> ``service_state_changed`` down), decision
-> ExaBGP ack (-> ``route_withdrawn``) and ack -> leaf FIB. Then the service restarts and
the announce latency (listening -> FIB) is measured the same way. ExaBGP's healthcheck
logs nothing we could time, so its figures are end to end.
"""

from __future__ import annotations

import random
import time
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


def _announcer(system: str, lab: Lab, settings: CheckSettings, workdir: Path) -> Announcer:
    if system == "sidecar":
        return SidecarRunner(lab, 1, tcp_services(1, settings, port=SERVICE_PORT), workdir)
    return HealthcheckRunner(lab, 1, [SERVICE_PORT], settings, workdir)


def run_one(
    lab: Lab, system: str, settings: CheckSettings, trials: int, workdir: Path
) -> dict[str, Any]:
    """``trials`` kill/restart cycles of one system at one setting."""
    budget = settings.interval * (max(settings.fall, settings.rise) + 2) + 10
    service = LabService(lab, "srv1", workdir)
    announcer = _announcer(system, lab, settings, workdir)
    leaf, spine = RouteWatch(lab, "leaf1"), RouteWatch(lab, "spine1")
    samples: dict[str, list[float]] = {
        key: []
        for key in (
            "withdraw_leaf",
            "withdraw_spine",
            "detection",
            "decision_to_ack",
            "ack_to_leaf_fib",
            "announce_leaf",
            "announce_spine",
        )
    }
    missed = 0
    misses: list[str] = []
    try:
        service.start()
        announcer.start()
        if spine.wait(True, 60) is None:
            raise TimeoutError(f"{system}: spine1 never learnt the prefix")
        for _ in range(trials):
            time.sleep(0.5 + random.uniform(0, settings.interval))
            leaf.clear()
            spine.clear()
            killed = time.time()
            service.kill()
            leaf_gone = leaf.wait(False, budget)
            spine_gone = spine.wait(False, 5)
            if leaf_gone is None or spine_gone is None:
                missed += 1
                misses.append(_miss("withdraw", lab, announcer, leaf_gone, spine_gone))
            else:
                samples["withdraw_leaf"].append(leaf_gone - killed)
                samples["withdraw_spine"].append(spine_gone - killed)
                if isinstance(announcer, SidecarRunner):
                    _split_sidecar(announcer, killed, leaf_gone, samples)
            leaf.clear()
            spine.clear()
            service.start()
            listening = time.time()
            leaf_back = leaf.wait(True, budget)
            spine_back = spine.wait(True, 5)
            if leaf_back is None or spine_back is None:
                missed += 1
                misses.append(_miss("announce", lab, announcer, leaf_back, spine_back))
                continue
            samples["announce_leaf"].append(leaf_back - listening)
            samples["announce_spine"].append(spine_back - listening)
    finally:
        announcer.stop()
        service.kill()
        leaf.close()
        spine.close()
    return {
        "system": system,
        "interval": settings.interval,
        "fall": settings.fall,
        "rise": settings.rise,
        "timeout": settings.timeout,
        "trials": trials,
        "missed": missed,
        "misses": misses,
        "samples": samples,
        "summary": {key: summary(values) for key, values in samples.items() if values},
    }


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
    sidecar: SidecarRunner, killed: float, leaf_gone: float, samples: dict[str, list[float]]
) -> None:
    downs = [
        log_time(e)
        for e in sidecar.events("service_state_changed")
        if e.get("new") == "down" and log_time(e) >= killed
    ]
    acks = [log_time(e) for e in sidecar.events("route_withdrawn") if log_time(e) >= killed]
    if downs and acks:
        samples["detection"].append(downs[0] - killed)
        samples["decision_to_ack"].append(acks[0] - downs[0])
        samples["ack_to_leaf_fib"].append(leaf_gone - acks[0])


def run(
    lab: Lab, trials: int, workdir: Path, settings: tuple[CheckSettings, ...] = SETTINGS
) -> list[dict[str, Any]]:
    """Both systems at every setting."""
    return [
        run_one(lab, system, setting, trials, workdir)
        for setting in settings
        for system in ("sidecar", "healthcheck")
    ]
