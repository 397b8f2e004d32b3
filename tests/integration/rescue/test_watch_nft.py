"""The nftables change watch against the real kernel, in a throwaway namespace.

A child process in the namespace opens :class:`NftablesWatch` and prints a line for
every change it reports; the test changes tables with ``nft`` and reads those lines.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.rescue.rescuelab import require_rescue_host
from tests.lablib import unique_lab_name

pytestmark = pytest.mark.integration

CHILD = """
import asyncio, sys
from anycast_announcer.rescue.watch import NftablesWatch

async def main():
    watch = NftablesWatch()
    watch.open()
    print("ready", flush=True)
    while True:
        await watch.changed()
        print("changed", flush=True)

asyncio.run(main())
"""


def _nft(namespace: str, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=script,
        check=True,
        capture_output=True,
        text=True,
    )


def _line(child: subprocess.Popen[str], within: float) -> str | None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], within)
    return child.stdout.readline().strip() if ready else None


@pytest.fixture
def watcher() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    require_rescue_host()
    name = unique_lab_name("rxwatch")
    subprocess.run(["ip", "netns", "add", name], check=True)
    child = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _line(child, 10) == "ready"
        yield name, child
    finally:
        child.kill()
        child.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_flushed_ruleset_is_reported_and_other_tables_are_not(
    watcher: tuple[str, subprocess.Popen[str]],
) -> None:
    namespace, child = watcher
    firewall = "table inet host_firewall {\n chain input { type filter hook input priority 0; }\n}"
    _nft(namespace, firewall)
    assert _line(child, 0.5) is None, "a foreign table woke the watch"
    _nft(namespace, "table ip anycast_rescue {\n chain info {\n }\n}\n")
    started = time.monotonic()
    assert _line(child, 5) == "changed"
    _nft(namespace, "flush ruleset")
    assert _line(child, 5) == "changed"
    assert time.monotonic() - started < 5
    _nft(namespace, "table inet host_firewall {\n}\n")
    assert _line(child, 0.5) is None
