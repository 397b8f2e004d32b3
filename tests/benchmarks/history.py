"""The history's memory ceiling and cost, measured; figures to docs/benchmarks/history.json.

    .venv/bin/python -m tests.benchmarks.history [--out FILE]

No lab: the history is pure, so a simulated day (clock as a parameter) fills it. Memory
is the object graph reachable from the history (``sys.getsizeof`` over
``gc.get_referents``) for the worst case: a change every 5 s all day with 160-character
reasons, and a probe every 5 s. Cost is the snapshot, its JSON and the page section for
50 services and 20 prefixes after a day of probes every second (in 10 s buckets). The
README quotes these figures; re-run this after changing ``history.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anycast_announcer.checks import ProbeResult
from anycast_announcer.core import effects as fx
from anycast_announcer.history import CHANGES_KEPT, REASON_CHARS, History
from anycast_announcer.http.history_page import render_history
from anycast_announcer.status import PrefixState
from tests.benchmarks.common import machine
from tests.lablib import REPO_ROOT
from tests.memory import deep_size
from tests.unit.http.fakes import replace, sample_status

T0 = 1_789_999_800.0
DAY = 86_400


def _worst(kind: str) -> int:
    history = History(T0)
    empty = deep_size(history)
    for second in range(0, DAY, 5):
        at, up = T0 + second, second % 10 != 0
        reason = f"{second:08d}" * (REASON_CHARS // 8 + 1)
        if kind == "service":
            history.observe(fx.ServiceChanged("svc", up, reason), at)
            history.observe(fx.ProbeRecorded("svc", ProbeResult(up, 0.01, "x")), at)
        elif kind == "prefix":
            state: PrefixState = "announced" if up else "withdrawn"
            history.observe(fx.PrefixChanged("10.255.0.1/32", state, up, reason), at)
        elif kind == "peer":
            history.observe(fx.PeerChanged("10.0.1.1", up, reason), at)
        else:
            history.rescue_counters(second * 9, second, at)
    return deep_size(history) - empty


def _timed(work: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fleet() -> dict[str, float]:
    """50 services probed every second for a day, 20 prefixes that changed twice."""
    history = History(T0)
    for index in range(20):
        prefix = f"10.255.{index}.1/32"
        history.observe(fx.PrefixChanged(prefix, "withdrawn", False, "starting"), T0)
        history.observe(fx.PrefixChanged(prefix, "announced", True, "services up"), T0 + 3)
    result = ProbeResult(True, 0.004, "connected")
    for second in range(DAY):
        for index in range(50):
            history.observe(fx.ProbeRecorded(f"svc-{index:02d}", result), T0 + second)
    now = T0 + DAY - 1
    base = sample_status()
    status = replace(
        base,
        services=tuple(replace(base.services[0], name=f"svc-{i:02d}") for i in range(50)),
        prefixes=tuple(
            replace(base.prefixes[0], prefix=f"10.255.{i}.1/32", services=(f"svc-{i:02d}",))
            for i in range(20)
        ),
    )
    hour = history.snapshot("hour", now)
    return {
        "bytes": deep_size(history),
        "snapshot_hour_s": _timed(lambda: history.snapshot("hour", now)),
        "snapshot_day_s": _timed(lambda: history.snapshot("day", now)),
        "json_hour_s": _timed(hour.model_dump_json),
        "json_hour_bytes": len(hour.model_dump_json()),
        "page_section_hour_s": _timed(lambda: render_history(hour, status)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks" / "history.json"))
    args = parser.parse_args()
    figures = {
        "changes_kept": CHANGES_KEPT,
        "reason_chars": REASON_CHARS,
        "worst_bytes": {kind: _worst(kind) for kind in ("service", "prefix", "peer", "rescue")},
        "fleet_50_services_20_prefixes": _fleet(),
        "machine": machine(),
    }
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
