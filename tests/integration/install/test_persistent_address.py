"""The README's systemd-networkd recipe for a persistent anycast address, under a real
systemd-networkd in a systemd guest (its own network namespace): the address it names is on
``lo`` after boot, and the loopback's own addresses stay.

The ifupdown recipe beside it is not run here: ifupdown is not installed on this machine,
and installing it would hand the host's networking to ``networking.service``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.install.systemd_system import (
    SystemManager,
    require_system_manager,
    system_manager,
)
from tests.lablib import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration

NETWORKD = "systemd-networkd.service"
RECIPE = "/etc/systemd/network/10-anycast-lo.network"


def readme_recipe() -> tuple[str, str]:
    """The README's networkd file, and the address it puts on ``lo``."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{RECIPE}`" in readme, f"README.md should name {RECIPE}"
    blocks = re.findall(r"```ini\n(.*?)```", readme, re.DOTALL)
    found = [_unindent(b) for b in blocks if "Name=lo" in b]
    assert len(found) == 1, "README.md should hold one networkd recipe for lo"
    (address,) = re.findall(r"^Address=(\S+)$", found[0], re.MULTILINE)
    return found[0], address


def _unindent(block: str) -> str:
    # The block sits in a numbered list, indented by three spaces.
    return "\n".join(line.removeprefix("   ") for line in block.splitlines()) + "\n"


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[SystemManager]:
    require_system_manager()
    recipe, _ = readme_recipe()
    seed = tmp_path / "seed"
    network = seed / RECIPE.lstrip("/")
    network.parent.mkdir(parents=True)
    network.write_text(recipe)
    (seed / "seed-setup.sh").write_text("true\n")
    with system_manager(tmp_path, seed, [NETWORKD]) as manager:
        yield manager


def test_networkd_recipe_puts_the_address_on_lo(guest: SystemManager) -> None:
    _, address = readme_recipe()
    guest.wait_active(NETWORKD)

    def on_lo() -> str:
        return guest.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout

    wait_until(
        lambda: f"inet {address} " in on_lo(),
        timeout=30,
        message=f"networkd never put {address} on lo:\n{guest.journal(NETWORKD)[-2000:]}",
    )
    assert "inet 127.0.0.1/8 " in on_lo()
    flags = re.search(r"<([^>]*)>", guest.run(["ip", "link", "show", "dev", "lo"]).stdout)
    assert flags is not None
    assert "UP" in flags.group(1).split(","), "lo is not up"
