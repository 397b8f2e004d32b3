"""Profile the sidecar under load with py-spy: where its CPU goes per probe.

    sudo .venv/bin/python -m tests.benchmarks.profiling --services 500 --seconds 20

Deploys the benchmark lab, runs srv1's service with one port per service and the sidecar
with that many TCP checks at 1 s, then samples the sidecar with ``py-spy record``
(collapsed stacks). Prints the functions with the most samples, own and cumulative, and
writes the raw stacks and an SVG flame graph next to ``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.benchmarks.common import (
    CheckSettings,
    LabService,
    SidecarRunner,
    bench_lab,
    kernel_nexthops,
    tcp_services,
    wait_for,
)

PY_SPY = str(Path(sys.executable).with_name("py-spy"))


def top_frames(
    collapsed: str, count: int = 15
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(own samples, cumulative samples) per frame from py-spy's collapsed output."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            cumulative[frame] += n
    return own.most_common(count), cumulative.most_common(count), total


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sidecar-profile"))
    args = parser.parse_args()
    settings = CheckSettings(interval=args.interval, fall=3, rise=3, timeout=0.5)
    with tempfile.TemporaryDirectory(prefix="anycast-prof-") as tmp, bench_lab() as lab:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        service = LabService(lab, "srv1", workdir, probe_ports=args.services)
        sidecar = SidecarRunner(lab, 1, tcp_services(args.services, settings), workdir)
        try:
            service.start()
            sidecar.start()
            wait_for(lambda: bool(kernel_nexthops(lab, "leaf1")), 60, "never announced")
            time.sleep(args.interval * settings.rise + 1)
            for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
                subprocess.run(
                    [
                        PY_SPY,
                        "record",
                        "--pid",
                        str(sidecar.pid),
                        "--duration",
                        str(args.seconds // 2),
                        "--rate",
                        "250",
                        "--format",
                        fmt,
                        "--nonblocking",
                        "--output",
                        str(args.out) + suffix,
                    ],
                    check=True,
                    capture_output=True,
                )
        finally:
            sidecar.stop()
            service.stop()
    own, cumulative, total = top_frames(Path(str(args.out) + ".txt").read_text())
    print(f"{total} samples of the sidecar with {args.services} services")
    print("own:")
    for frame, n in own:
        print(f"  {n / total:6.1%}  {frame}")
    print("cumulative:")
    for frame, n in cumulative:
        print(f"  {n / total:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
