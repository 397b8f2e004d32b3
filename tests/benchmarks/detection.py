"""Failures found by events, end to end on the benchmark fabric (issue 11).

Three measurements on top of the kill and graceful-stop rows of :mod:`.withdraw`:

- **Address removed**: ``ip addr del 10.255.0.1/32 dev lo`` in srv1 while the service
  keeps listening. ``ip monitor address`` in srv1 stamps the removal as the kernel
  announces it; ``ip monitor route`` in leaf1 stamps the route leaving the FIB. For the
  sidecar its log splits the time into detection (removal -> ``address_changed``),
  -> ExaBGP's ack (``route_withdrawn``) and ack -> leaf FIB. healthcheck has no address
  watch (it only adds the address at start, and we run it with ``no-ip-setup``): its
  probe connects to an address that is no longer local, which leaves srv1 through the
  leaf and is dropped on its way back, so the check times out (healthcheck's timeout
  takes whole seconds: 1 s) ``fall`` times. Its row shows what happens, not a feature.
- **Churn**: the client node opens and closes connections on the service port at a
  paced rate, through leaf1 (``events_agent load``: the server closes first, so the
  client keeps no TIME_WAIT and the rate holds for minutes). The service is
  ``tcpproc serve`` (accepts and closes at once). We read the sidecar's process tree CPU
  (sidecar + ExaBGP, from /proc) over an idle window and a churn window of the same
  length, with the listener watch on and, as the control, off: the event path's cost
  is the difference of the two increases. Its /metrics counters of listener events must
  not move, and the route must not leave leaf1 (nothing withdrawn).
- **Cost at equal withdraw time**: the sidecar at a relaxed interval (5 s) still
  withdraws a killed service in milliseconds (its kill -> leaf FIB p99 is measured
  here, at that interval). healthcheck can only poll faster: we run it at fall 1 (its
  fastest, so the comparison favours it) at a tiny interval to find its floor, model
  its p99 as ``interval + fixed`` (the fixed part being the check's own time, ExaBGP and
  FRR), and pick ``interval = target - fixed``; that interval is then checked with kill
  trials of its own. The target is the sidecar's p99 when healthcheck can reach it, and
  otherwise the issue's 150 ms bound, which the sidecar also meets (so healthcheck is
  still the slower of the two and the ratio a lower bound). Both then run 50 services
  for a window: CPU per service per second. healthcheck is pinned to one core, to keep
  it from taking the whole (shared) machine; when it saturates that core it probes
  slower than asked, so its measured CPU is a lower bound too, and we add the CPU it
  would need, from its measured CPU per probe and the period it keeps when unloaded
  (one service at the same interval).
"""

from __future__ import annotations

import json
import random
import re
import select
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from tests.benchmarks import cost, withdraw
from tests.benchmarks.common import (
    ANYCAST,
    SERVICE_PORT,
    Announcer,
    CheckSettings,
    LabService,
    RouteWatch,
    SidecarRunner,
    kernel_nexthops,
    log_time,
    summary,
    tcp_services,
    tree_cpu,
    wait_for,
)
from tests.integration.events.netns import entered
from tests.lablib import REPO_ROOT

ADDRESS_SETTINGS = CheckSettings(interval=0.2, fall=2, rise=2, timeout=0.1)
"""healthcheck's fastest row of section 1; the sidecar's address watch ignores it."""
CHURN_SETTINGS = CheckSettings(interval=1.0, fall=2, rise=2, timeout=0.5)
"""The sidecar's configuration defaults."""
RELAXED = CheckSettings(interval=5.0, fall=3, rise=2, timeout=0.5)
HEALTHCHECK_FLOOR_INTERVAL = 0.02
TARGET_BOUND = 0.150
"""The issue's kill -> FIB target, used when healthcheck cannot reach the sidecar's p99."""
METRICS_LISTEN = "127.0.0.1:9179"
_SLACK = 0.1
"""Seconds a log event may precede our stamp of the same kernel event (trials are >= 0.5 s
apart, so nothing of the previous trial falls in)."""


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each measurement runs."""

    address_trials: int
    """healthcheck's; the sidecar's take a second each: it gets ``sidecar_address_trials``."""
    sidecar_address_trials: int
    churn_seconds: float
    churn_rate: float
    relaxed_trials: int
    calibration_trials: int
    cost_services: int
    cost_seconds: float


FULL = Sizes(
    sidecar_address_trials=100,
    address_trials=30,
    churn_seconds=30,
    churn_rate=2000,
    relaxed_trials=30,
    calibration_trials=20,
    cost_services=50,
    cost_seconds=60,
)
QUICK = Sizes(
    sidecar_address_trials=3,
    address_trials=3,
    churn_seconds=10,
    churn_rate=2000,
    relaxed_trials=3,
    calibration_trials=5,
    cost_services=50,
    cost_seconds=10,
)


class AddressMonitor(RouteWatch):
    """``ip monitor address`` in a node: the anycast address coming and going."""

    OBJECT = "address"

    def _pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^(Deleted )?\d+: \S+\s+inet {re.escape(self._prefix)}/")


# -- address removed -----------------------------------------------------------------------


def _set_address(lab: Lab, present: bool) -> None:
    verb = "replace" if present else "del"
    lab.run("srv1", ["ip", "addr", verb, f"{ANYCAST}/32", "dev", "lo"])


def address_removal(
    lab: Lab, system: str, settings: CheckSettings, trials: int, workdir: Path
) -> dict[str, Any]:
    """``trials`` removals of the anycast address from srv1's lo, each put back after."""
    budget = settings.interval * (settings.fall + 2) + 10 + settings.fall
    service = LabService(lab, "srv1", workdir)
    announcer = withdraw.announcer_for(system, lab, settings, workdir)
    leaf, addresses = RouteWatch(lab, "leaf1"), AddressMonitor(lab, "srv1")
    samples: dict[str, list[float]] = {
        key: [] for key in ("withdraw_leaf", "detection", "to_ack", "ack_to_leaf_fib", "back")
    }
    misses: list[str] = []
    reasons: list[str] = []
    try:
        service.start()
        announcer.start()
        if leaf.wait(True, 60) is None:
            raise TimeoutError(f"{system}: leaf1 never learnt the prefix")
        for _ in range(trials):
            time.sleep(0.5 + random.uniform(0, settings.interval))
            _address_trial(
                lab,
                announcer,
                (leaf, addresses),
                budget,
                samples=samples,
                misses=misses,
                reasons=reasons,
            )
    finally:
        announcer.stop()
        service.kill()
        leaf.close()
        addresses.close()
        _set_address(lab, True)
    return {
        "system": system,
        "interval": settings.interval,
        "fall": settings.fall,
        "rise": settings.rise,
        "trials": trials,
        "missed": len(misses),
        "misses": misses,
        "reasons": sorted(set(reasons)),
        "samples": samples,
        "summary": {key: summary(values) for key, values in samples.items() if values},
    }


def _address_trial(
    lab: Lab,
    announcer: Announcer,
    watches: tuple[RouteWatch, AddressMonitor],
    budget: float,
    *,
    samples: dict[str, list[float]],
    misses: list[str],
    reasons: list[str],
) -> None:
    leaf, addresses = watches
    leaf.clear()
    addresses.clear()
    _set_address(lab, False)
    removed = addresses.wait(False, 5)
    leaf_gone = leaf.wait(False, budget)
    if removed is None or leaf_gone is None:
        misses.append(f"withdraw: removal {removed}, leaf {leaf_gone}")
    else:
        samples["withdraw_leaf"].append(leaf_gone - removed)
        if isinstance(announcer, SidecarRunner):
            reasons += _split_address(announcer, removed, leaf_gone, samples)
    leaf.clear()
    addresses.clear()
    _set_address(lab, True)
    added = addresses.wait(True, 5)
    leaf_back = leaf.wait(True, budget)
    if added is None or leaf_back is None:
        misses.append(f"announce: address {added}, leaf {leaf_back}")
        return
    samples["back"].append(leaf_back - added)


def _split_address(
    sidecar: SidecarRunner, removed: float, leaf_gone: float, samples: dict[str, list[float]]
) -> list[str]:
    """Detection, ack and FIB times from the sidecar's log; the withdrawal's reason."""
    # The sidecar and our `ip monitor` hear of the removal from the same broadcast, so
    # the sidecar may log it a fraction of a millisecond before we stamp it.
    since = removed - _SLACK
    seen = [
        log_time(e)
        for e in sidecar.events("address_changed")
        if e.get("present") is False and log_time(e) >= since
    ]
    acks = [log_time(e) for e in sidecar.events("route_withdrawn") if log_time(e) >= since]
    prefix = [
        str(e.get("reason"))
        for e in sidecar.events("prefix_state_changed")
        if e.get("new") == "withdrawn" and log_time(e) >= since
    ]
    if seen and acks:
        samples["detection"].append(seen[0] - removed)
        samples["to_ack"].append(acks[0] - removed)
        samples["ack_to_leaf_fib"].append(leaf_gone - acks[0])
    return prefix[:1]


# -- churn ---------------------------------------------------------------------------------


def _metrics(lab: Lab) -> dict[str, float]:
    """The sidecar's ``anycast_detection_*`` samples, read inside srv1's namespace."""
    url = f"http://{METRICS_LISTEN}/metrics"
    # The socket belongs to the namespace current when urlopen creates it.
    with entered(lab.ns("srv1")), urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("anycast_detection_events") and "_total{" in line:
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _serve(lab: Lab) -> subprocess.Popen[str]:
    """``tcpproc serve`` on the service port in srv1 (accepts and closes at once)."""
    argv = [sys.executable, "-m", "tests.integration.events.tcpproc", "serve"]
    proc: subprocess.Popen[str] = lab.popen(
        "srv1",
        [*argv, ANYCAST, str(SERVICE_PORT)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready or proc.stdout.readline().strip() != "listening":
        proc.kill()
        raise RuntimeError("tcpproc serve never listened in srv1")
    return proc


def _load(lab: Lab, rate: float, seconds: float) -> dict[str, Any]:
    """Paced connections from the client node; its own count of what it achieved."""
    argv = [sys.executable, "-m", "tests.benchmarks.events_agent", "load", ANYCAST]
    result = lab.run(
        "client",
        [*argv, str(SERVICE_PORT), str(rate), str(seconds)],
        timeout=seconds * 4 + 60,
    )
    load: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return load


def churn_row(
    lab: Lab, listener_events: bool, rate: float, seconds: float, workdir: Path
) -> dict[str, Any]:
    """The sidecar's CPU idle and under churn, its listener counters, and any withdrawal."""
    services = tcp_services(1, CHURN_SETTINGS, port=SERVICE_PORT)
    services[0]["listener_events"] = listener_events
    sidecar = SidecarRunner(lab, 1, services, workdir, http_listen=METRICS_LISTEN)
    server = _serve(lab)
    leaf = RouteWatch(lab, "leaf1")
    started = time.time()  # the log file is shared by every sidecar run in srv1
    try:
        sidecar.start()
        if leaf.wait(True, 60) is None:
            raise TimeoutError("churn: leaf1 never learnt the prefix")
        wait_for(lambda: _ready(lab), 10, "the sidecar's /metrics never answered")
        leaf.clear()
        before = _metrics(lab)
        start = sum(tree_cpu(sidecar.pid).values())
        time.sleep(seconds)
        middle = sum(tree_cpu(sidecar.pid).values())
        began = time.monotonic()
        load = _load(lab, rate, seconds)
        window = time.monotonic() - began
        end = sum(tree_cpu(sidecar.pid).values())
        after = _metrics(lab)
        withdrawn = leaf.wait(False, 0.1) is not None or not kernel_nexthops(lab, "leaf1")
    finally:
        sidecar.stop()
        server.kill()
        server.wait(timeout=5)
        leaf.close()
    downs = [
        e
        for e in sidecar.events("service_state_changed")
        if e.get("new") == "down" and log_time(e) >= started
    ]
    watches = [e for e in sidecar.events("listener_watch") if log_time(e) >= started]
    idle_percent = (middle - start) / seconds * 100
    load_percent = (end - middle) / window * 100
    return {
        "listener_events": listener_events,
        "watched_targets": [str(t) for t in watches[-1]["targets"]] if watches else [],
        "seconds": seconds,
        "asked_rate": rate,
        "connections": load["connections"],
        "failed_connections": load["failed"],
        "connections_per_second": load["connections"] / load["seconds"],
        "idle_cpu_percent": idle_percent,
        "churn_cpu_percent": load_percent,
        "added_cpu_percent": load_percent - idle_percent,
        "metrics_before": before,
        "metrics_after": after,
        "withdrawn": withdrawn,
        "downs": downs,
    }


def _ready(lab: Lab) -> bool:
    try:
        _metrics(lab)
    except OSError:
        return False
    return True


def churn(lab: Lab, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """Churn with the listener watch on, and off as the control; the event path's share."""
    lab.run("client", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"])
    on = churn_row(lab, True, rate, seconds, workdir)
    off = churn_row(lab, False, rate, seconds, workdir)
    return {
        "rows": [on, off],
        "event_path_cpu_percent": on["added_cpu_percent"] - off["added_cpu_percent"],
    }


# -- cost at equal withdraw time -------------------------------------------------------------


def _p99(row: dict[str, Any]) -> float:
    return float(row["summary"].get("withdraw_leaf", {}).get("p99", float("nan")))


def healthcheck_interval(sidecar_p99: float, floor_p99: float) -> tuple[float, float, bool]:
    """(target, interval, matched): healthcheck's interval at fall 1 for a p99 of target.

    Its p99 is modelled as ``interval + fixed``, with ``fixed`` from the floor run at
    HEALTHCHECK_FLOOR_INTERVAL. When even the floor is slower than the sidecar, the target
    becomes the issue's bound (``matched`` False).
    """
    fixed = floor_p99 - HEALTHCHECK_FLOOR_INTERVAL
    matched = sidecar_p99 >= floor_p99
    target = sidecar_p99 if matched else max(TARGET_BOUND, sidecar_p99)
    interval = max(HEALTHCHECK_FLOOR_INTERVAL, target - fixed)
    return target, round(interval, 3), matched


def _per_service(row: dict[str, Any]) -> float:
    """CPU seconds per service per second of a cost row."""
    return float(row["cpu_seconds"]) / float(row["duration"]) / int(row["services"])


def equal_time_cost(
    lab: Lab, sizes: Sizes, workdir: Path, relaxed: CheckSettings = RELAXED
) -> dict[str, Any]:
    """The sidecar at ``relaxed`` against healthcheck polling fast enough to keep up."""
    ours = withdraw.run_one(lab, "sidecar", relaxed, sizes.relaxed_trials, workdir)
    floor_settings = CheckSettings(HEALTHCHECK_FLOOR_INTERVAL, fall=1, rise=1, timeout=0.1)
    floor = withdraw.run_one(lab, "healthcheck", floor_settings, sizes.calibration_trials, workdir)
    target, interval, matched = healthcheck_interval(_p99(ours), _p99(floor))
    fast = CheckSettings(interval, fall=1, rise=1, timeout=0.1)
    theirs = withdraw.run_one(lab, "healthcheck", fast, sizes.calibration_trials, workdir)
    n, seconds = sizes.cost_services, sizes.cost_seconds
    sidecar_cost = cost.measure(lab, "sidecar", n, seconds, workdir, settings=relaxed)
    # Half the window: it saturates its core, and the machine is shared.
    hc_cost = cost.measure(lab, "healthcheck", n, seconds / 2, workdir, settings=fast, pin="1")
    hc_alone = cost.measure(lab, "healthcheck", 1, seconds / 2, workdir, settings=fast)
    ours_per_service = _per_service(sidecar_cost)
    measured = _per_service(hc_cost)
    per_probe = hc_cost["cpu_seconds"] / hc_cost["probes"] if hc_cost["probes"] else float("nan")
    period = hc_alone.get("mean_period") or float("nan")
    needed = per_probe / period
    return {
        "sidecar_settings": asdict(relaxed),
        "healthcheck_settings": asdict(fast),
        "sidecar_withdraw": ours,
        "healthcheck_floor": floor,
        "healthcheck_withdraw": theirs,
        "target": target,
        "matched": matched,
        "sidecar_cost": sidecar_cost,
        "healthcheck_cost": hc_cost,
        "healthcheck_alone": hc_alone,
        "sidecar_cpu_per_service_second": ours_per_service,
        "healthcheck_cpu_per_service_second": measured,
        "healthcheck_cpu_per_probe": per_probe,
        "healthcheck_unloaded_period": period,
        "healthcheck_needed_cpu_per_service_second": needed,
        "ratio_measured": measured / ours_per_service,
        "ratio_needed": needed / ours_per_service,
    }


# -- all of it -------------------------------------------------------------------------------


def run(lab: Lab, sizes: Sizes, workdir: Path, relaxed: CheckSettings = RELAXED) -> dict[str, Any]:
    """Every measurement of this module at ``sizes`` (``relaxed``: the sidecar's settings
    in the cost comparison)."""
    return {
        "sizes": asdict(sizes),
        "address": [
            address_removal(
                lab, "sidecar", ADDRESS_SETTINGS, sizes.sidecar_address_trials, workdir
            ),
            address_removal(lab, "healthcheck", ADDRESS_SETTINGS, sizes.address_trials, workdir),
        ],
        "churn": churn(lab, sizes.churn_rate, sizes.churn_seconds, workdir),
        "equal_time_cost": equal_time_cost(lab, sizes, workdir, relaxed),
    }
