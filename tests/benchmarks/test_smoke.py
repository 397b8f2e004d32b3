"""Every benchmark at tiny sizes: figures come out and are sane. Not a measurement.

Full-size runs go through ``python -m tests.benchmarks.run`` (``make bench``) only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.benchmarks import cost, detection, report, run, sessions, withdraw
from tests.benchmarks.common import CheckSettings, bench_lab, machine
from tests.benchmarks.hashmath import movement, rfc2992_innocent_share
from tests.lablib import require_lab_host

# The module's fixture runs every benchmark once, and its time is charged to the first
# test. It takes about 110 s with FRR 8.4 (Debian 12) but 280 s with FRR 10.3 (Debian 13),
# where a newly started ExaBGP took about 5 s to establish its session with the leaf
# (under 1 s with 8.4), and the fixture starts one again and again: too close to the
# suite's 300 s, which a loaded machine exceeded.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FAST = CheckSettings(interval=0.2, fall=2, rise=2, timeout=0.1)
TINY = detection.Sizes(
    address_trials=1,
    sidecar_address_trials=1,
    churn_seconds=1,
    churn_rate=500,
    relaxed_trials=1,
    calibration_trials=1,
    cost_services=3,
    cost_seconds=1,
)
RELAXED = CheckSettings(interval=1.0, fall=2, rise=1, timeout=0.5)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    with bench_lab() as deployed:
        yield deployed


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def results(lab: Lab, workdir: Path) -> dict[str, Any]:
    """All five benchmarks at the smallest sizes that still say something."""
    rows = cost.run(lab, [1, 3], [1, 2], 2.0, workdir, FAST)
    rows["extrapolated"] = run.extrapolate(rows["rows"], [50])
    return {
        "machine": machine(),
        "run": {"quick": True, "date": "smoke"},
        "withdraw": withdraw.run(lab, 2, workdir, (FAST,)),
        "cost": rows,
        "ceiling": cost.ceiling(lab, [20], 2.0, workdir, FAST),
        "sessions": sessions.run(lab, [2], 40, workdir, ("failure", "addition")),
        "detection": detection.run(lab, TINY, workdir, RELAXED),
    }


def _sane(value: float, floor: float = 0.0) -> bool:
    return not math.isnan(value) and value >= floor


def test_withdraw_latencies_are_measured_for_both_systems(results: dict[str, Any]) -> None:
    """Each system withdrew and re-announced in every trial, killed or stopped, with
    non-negative times; the sidecar's listener event took the service down every time."""
    rows = {(row["system"], row["stop"]): row for row in results["withdraw"]}
    assert set(rows) == {(s, t) for s in ("sidecar", "healthcheck") for t in withdraw.STOPS}
    for row in rows.values():
        assert row["missed"] == 0
        assert len(row["samples"]["withdraw_leaf"]) == row["trials"]
        for name, values in row["samples"].items():
            # The leaf may drop the route before ExaBGP's "done" reaches the sidecar (it
            # sends the UPDATE, then answers): on a loaded host ack_to_leaf_fib, the
            # difference of two observers, can be slightly negative. The rest cannot.
            floor = -1.0 if name == "ack_to_leaf_fib" else 0.0
            assert all(_sane(v, floor) for v in values), (name, values)
        assert row["summary"]["withdraw_spine"]["p50"] >= row["summary"]["withdraw_leaf"]["p50"]
    for stop in withdraw.STOPS:
        mine = rows[("sidecar", stop)]
        assert len(mine["samples"]["detection"]) == mine["trials"]
        assert mine["watched_targets"] == ["10.255.0.1:8080"]
        assert mine["sources"] == {"listener": mine["trials"]}


def test_address_removal_withdraws_both_systems(results: dict[str, Any]) -> None:
    """Removing the address withdrew every time; the sidecar said why and when it acked."""
    rows = {row["system"]: row for row in results["detection"]["address"]}
    for row in rows.values():
        assert row["missed"] == 0, row["misses"]
        assert len(row["samples"]["withdraw_leaf"]) == row["trials"]
    mine = rows["sidecar"]
    assert mine["reasons"], mine
    assert len(mine["samples"]["to_ack"]) == mine["trials"]


def test_churn_moves_no_listener_event_and_withdraws_nothing(results: dict[str, Any]) -> None:
    """Client connections ended on the port; the watch saw none of them, the route stayed."""
    churn = results["detection"]["churn"]
    on, off = churn["rows"]
    assert on["watched_targets"] == ["10.255.0.1:8080"]
    assert off["watched_targets"] == []
    for row in churn["rows"]:
        assert row["connections"] > 0
        assert row["failed_connections"] == 0
        assert not row["withdrawn"]
        assert row["downs"] == []
        assert row["metrics_after"] == row["metrics_before"]
    assert not math.isnan(churn["event_path_cpu_percent"])


def test_equal_time_cost_compares_cpu_per_service(results: dict[str, Any]) -> None:
    """Both systems ran their services and were charged CPU; the ratios are computed."""
    equal = results["detection"]["equal_time_cost"]
    assert equal["sidecar_cost"]["probes"] > 0
    assert equal["healthcheck_cost"]["probes"] > 0
    assert equal["healthcheck_settings"]["interval"] >= detection.HEALTHCHECK_FLOOR_INTERVAL
    for key in ("ratio_measured", "ratio_needed"):
        assert _sane(equal[key])
        assert equal[key] > 0


def test_cost_counts_probes_cpu_and_memory(results: dict[str, Any]) -> None:
    """Probes arrived at the listeners; CPU and RSS were read for every row."""
    for row in results["cost"]["rows"]:
        assert row["probes"] > 0, row
        assert _sane(row["cpu_seconds"])
        assert row["rss_mib"] > 0
        assert row["processes"] >= (2 if row["system"] == "sidecar" else row["services"] + 1)
    for row in results["cost"]["idle"]:
        assert row["rss_mib"] > 0
    assert results["cost"]["extrapolated"][0]["services"] == 50


def test_ceiling_reports_schedule_lag(results: dict[str, Any]) -> None:
    (row,) = results["ceiling"]
    assert row["pinned"] == "1"
    assert row["lag"]["n"] > 0
    assert _sane(row["lag"]["p99"])


def test_session_counts_add_up(results: dict[str, Any]) -> None:
    """Every session held is broken, drained or survived; breaks split by server."""
    for row in results["sessions"]:
        assert row["sessions"] + row["failed_to_open"] == 40
        assert row["broken"] + row["drained"] + row["survived"] == row["sessions"]
        assert row["broken"] == row["broken_on_affected"] + row["broken_on_others"]
        assert 0 <= row["floor"] <= row["sessions"]
    failure = next(row for row in results["sessions"] if row["event"] == "failure")
    assert failure["broken_on_affected"] == failure["on_affected"]
    # With rescue on, the sessions an addition moves are handed back: none breaks.
    (added,) = [r for r in results["sessions"] if r["event"] == "addition" and r["rescue"]]
    assert added["broken"] == 0, added
    assert added["rescue_counters"]["rescued"] > 0


def test_report_writes_markdown_json_and_plots(results: dict[str, Any], tmp_path: Path) -> None:
    path = report.write(results, tmp_path, ["smoke"])
    text = path.read_text(encoding="utf-8")
    assert "## Targets" in text
    assert "quick run" in text
    for name in ("withdraw", "cost", "ceiling", "sessions"):
        assert (tmp_path / "benchmarks" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "benchmarks" / f"{name}.json").exists()
    assert (tmp_path / "benchmarks" / "detection.json").exists()
    assert "## 6. Failures found by events" in text
    assert "graceful" in text


def test_healthcheck_interval_follows_the_floor() -> None:
    """Reachable target: interval = target - fixed; unreachable: the issue's bound."""
    floor = detection.HEALTHCHECK_FLOOR_INTERVAL
    target, interval, matched = detection.healthcheck_interval(0.300, floor + 0.080)
    assert (target, interval, matched) == (0.300, 0.220, True)
    target, interval, matched = detection.healthcheck_interval(0.070, floor + 0.080)
    assert (target, interval, matched) == (detection.TARGET_BOUND, 0.070, False)
    assert detection.healthcheck_interval(0.070, 0.5)[1] == floor


def test_hash_threshold_arithmetic_matches_rfc_2992() -> None:
    """The generic region overlap equals the closed form, and spans RFC 2992's 1/4..1/2."""
    for n in (2, 4, 8):
        hops = [(str(i), 1.0) for i in range(1, n + 1)]
        for k in range(1, n + 1):
            gone = movement(hops, [h for h in hops if h[0] != str(k)])
            assert gone.innocent == pytest.approx(rfc2992_innocent_share(n, k))
            assert gone.moved == pytest.approx(1 / n + rfc2992_innocent_share(n, k))
    assert rfc2992_innocent_share(1000, 1) == pytest.approx(0.5, abs=2e-3)
    assert rfc2992_innocent_share(1000, 500) == pytest.approx(0.25, abs=1e-2)
