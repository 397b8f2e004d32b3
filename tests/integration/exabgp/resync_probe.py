"""Drives the real ExaBGP driver inside a lab node, for test_resync_frr.

    python -m tests.integration.exabgp.resync_probe CONFIG_JSON

Announces a good route, then a route whose community smuggles a second command past
the validation (a newline: built here directly, the config file can no longer hold it),
so ExaBGP answers twice for one command; then asks for the good route alone again.
Prints the sidecar's JSON log lines, and ``synced`` each time the driver is in sync.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from anycast_announcer.config import BgpConfig, ExabgpConfig
from anycast_announcer.exabgp.driver import ExabgpDriver
from anycast_announcer.logging import configure_logging
from anycast_announcer.routes import Route

SMUGGLED = "10.255.0.9/32"


async def main(config: dict[str, Any]) -> int:
    bgp = BgpConfig.model_validate(config["bgp"])
    peer = str(bgp.peers[0].address)
    settings = ExabgpConfig(restart_backoff_initial=0.5, restart_backoff_max=1.0, watchdog=0)
    up = asyncio.Event()

    def on_session(address: str, is_up: bool, reason: str) -> None:
        if address == peer:
            (up.set if is_up else up.clear)()

    driver = ExabgpDriver(bgp, settings, on_session)
    task = asyncio.create_task(driver.run())
    good = Route(peer=peer, prefix="10.255.0.1/32")
    split = Route(
        peer=peer,
        prefix="10.255.0.2/32",
        communities=(f"65001:100 ]\nneighbor {peer} announce route {SMUGGLED} next-hop self",),
    )
    try:
        await asyncio.wait_for(up.wait(), 30)
        driver.set_desired({good.key: good})
        await asyncio.wait_for(driver.wait_synced(), 10)
        print("synced", flush=True)
        driver.set_desired({good.key: good, split.key: split})
        await asyncio.sleep(3)  # the double answer, the restart
        driver.set_desired({good.key: good})
        await asyncio.wait_for(up.wait(), 30)
        await asyncio.wait_for(driver.wait_synced(), 10)
        print("synced", flush=True)
        await asyncio.sleep(float(config.get("hold", 2)))
    finally:
        await driver.stop()
        task.cancel()
    return 0


if __name__ == "__main__":
    configure_logging("json", "debug")
    raise SystemExit(asyncio.run(main(json.loads(sys.argv[1]))))
