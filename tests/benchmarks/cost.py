"""Cost (CPU per 1,000 probes, resident memory) and schedule lag of both systems.

srv1 runs the lab service with one listener port per health-checked service; each
listener stamps every probe connection's arrival. The announcer (sidecar, or ExaBGP with
one healthcheck process per service) runs in srv1 with its BGP session to leaf1 up. Over
the measuring window we read utime+stime+cutime+cstime of the announcer's whole process
tree from /proc (children included: ExaBGP, and the shells healthcheck forks per probe)
and VmRSS at the end; the probe count is what the listeners saw.

Schedule lag is measured from the outside, because the sidecar exposes none: per service,
arrival j is expected at ``first + n_j * interval``; lag is the residual above the least
late arrival of that service, a lower bound of the true lag (the best probe is taken as
on time). healthcheck keeps no schedule (it sleeps ``interval`` *after* each check), so
for it we report the mean period instead.

The ceiling run pins the sidecar (and its ExaBGP) to one core with ``taskset`` and raises
the number of services until the lag p99 passes 10% of the interval.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from tests.benchmarks.common import (
    Announcer,
    CheckSettings,
    HealthcheckRunner,
    LabService,
    RouteWatch,
    SidecarRunner,
    cpu_between,
    kernel_nexthops,
    summary,
    tcp_services,
    tree_cpu,
    tree_rss_bytes,
    wait_for,
)

COST_SETTINGS = CheckSettings(interval=1.0, fall=3, rise=3, timeout=0.5)
IDLE_SETTINGS = CheckSettings(interval=3600.0, fall=3, rise=1, timeout=0.5)


def schedule_lags(arrivals: list[float], interval: float) -> list[float]:
    """Lag of each arrival above the service's least late one (see the module doc)."""
    if len(arrivals) < 2:
        return []
    first = arrivals[0]
    residuals = [a - first - round((a - first) / interval) * interval for a in arrivals]
    best = min(residuals)
    return [r - best for r in residuals]


def _announcer(
    system: str, lab: Lab, services: int, settings: CheckSettings, workdir: Path, pin: str | None
) -> Announcer:
    if system == "sidecar":
        runner: Announcer = SidecarRunner(lab, 1, tcp_services(services, settings), workdir)
    else:
        runner = HealthcheckRunner(lab, 1, [20000 + i for i in range(services)], settings, workdir)
    runner.pin = pin
    return runner


def measure(
    lab: Lab,
    system: str,
    services: int,
    duration: float,
    workdir: Path,
    *,
    settings: CheckSettings = COST_SETTINGS,
    pin: str | None = None,
) -> dict[str, Any]:
    """One window of one system with ``services`` TCP-checked services."""
    service = LabService(lab, "srv1", workdir, probe_ports=services)
    announcer = _announcer(system, lab, services, settings, workdir, pin)
    leaf = RouteWatch(lab, "leaf1")
    try:
        service.start()
        announcer.start()
        # Realistic: the session is up and the prefix announced before we measure.
        wait_for(
            lambda: bool(kernel_nexthops(lab, "leaf1")),
            60 + services * 0.2,
            f"{system} with {services} services never announced",
        )
        # Let the last services (started up to a tenth of an interval later) rise too.
        time.sleep(settings.interval * settings.rise + 0.5 if settings.interval <= 5 else 0.5)
        before = tree_cpu(announcer.pid)
        start = time.time()
        time.sleep(duration)
        after = tree_cpu(announcer.pid)
        end = time.time()
        rss = tree_rss_bytes(announcer.pid)
        processes = len(after)
    finally:
        announcer.stop()
        arrivals = service.stop()
        leaf.close()
    window = {port: [t for t in times if start <= t < end] for port, times in arrivals.items()}
    probes = sum(len(times) for times in window.values())
    cpu = cpu_between(before, after)
    result: dict[str, Any] = {
        "system": system,
        "services": services,
        "interval": settings.interval,
        "duration": end - start,
        "probes": probes,
        "cpu_seconds": cpu,
        "cpu_per_1000_probes": cpu / probes * 1000 if probes else None,
        "cpu_percent": cpu / (end - start) * 100,
        "rss_mib": rss / 2**20,
        "processes": processes,
        "pinned": pin,
    }
    if system == "sidecar":
        lags = [lag for times in window.values() for lag in schedule_lags(times, settings.interval)]
        result["lag"] = summary(lags)
        result["lag_fraction_p99"] = result["lag"]["p99"] / settings.interval
    else:
        periods = [(t[-1] - t[0]) / (len(t) - 1) for t in window.values() if len(t) > 1]
        result["mean_period"] = sum(periods) / len(periods) if periods else None
    return result


def run(
    lab: Lab,
    sidecar_counts: list[int],
    healthcheck_counts: list[int],
    duration: float,
    workdir: Path,
    settings: CheckSettings = COST_SETTINGS,
) -> dict[str, Any]:
    """Idle and loaded windows for both systems."""
    rows = [
        measure(lab, "sidecar", n, duration, workdir, settings=settings) for n in sidecar_counts
    ]
    rows += [
        measure(lab, "healthcheck", n, duration, workdir, settings=settings)
        for n in healthcheck_counts
    ]
    idle = [
        measure(lab, system, 1, duration, workdir, settings=IDLE_SETTINGS)
        for system in ("sidecar", "healthcheck")
    ]
    return {"rows": rows, "idle": idle}


def ceiling(
    lab: Lab,
    counts: list[int],
    duration: float,
    workdir: Path,
    settings: CheckSettings = COST_SETTINGS,
) -> list[dict[str, Any]]:
    """The sidecar on one core (core 1; the listeners may use any) at rising load."""
    return [
        measure(lab, "sidecar", n, duration, workdir, settings=settings, pin="1") for n in counts
    ]
