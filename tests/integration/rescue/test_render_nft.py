"""The kernel accepts every table the renderer can produce (``nft -c`` in a namespace).

``dup ... device NAME`` needs the device to exist even for a check, so the throwaway
namespace gets two VXLAN devices under the overlay names first.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator

import pytest

from anycast_announcer.rescue.diff import registrations_script
from anycast_announcer.rescue.model import Family, RescuePlan
from anycast_announcer.rescue.render import RenderMode, render_table
from tests.integration.rescue.rescuelab import require_rescue_host
from tests.lablib import unique_lab_name
from tests.unit.rescue.plans import BASE, plan

pytestmark = pytest.mark.integration

V6_UNDERLAY = BASE.replace(
    "members: [10.2.3.2, 10.2.1.2, 10.2.2.2]", 'members: ["fd00:2:2::2", "fd00:2:1::2"]'
)
MANY_PREFIXES = BASE.replace(
    "  - {prefix: 10.255.0.1/32, services: [web]}",
    "  - {prefix: 10.255.0.1/32, services: [web]}\n"
    "  - {prefix: 10.254.0.0/22, services: [web]}\n"
    "  - {prefix: 10.253.0.0/29, services: [web]}",
).replace('"fd00:255::1/128"', '"fd00:255::/64"')

PLANS = {
    "ipv4-underlay": lambda: plan(),
    "ipv6-underlay": lambda: plan(base=V6_UNDERLAY, local="fd00:2:1::2"),
    "many-prefixes": lambda: plan(base=MANY_PREFIXES),
    "no-clamp-jumbo": lambda: plan("  clamp_mss: false\n", mtu=9000),
    "ipv4-only": lambda: plan(
        base=BASE.replace('  - {prefix: "fd00:255::1/128", services: [web]}\n', "")
    ),
    # 1,000 members: the flow directory's per-peer sets, chains and maps load too.
    "thousand": lambda: plan(
        "  overlay_ipv4: 169.254.80.0/21\n",
        base=BASE.replace(
            "members: [10.2.3.2, 10.2.1.2, 10.2.2.2]",
            "members: [10.2.1.2, "
            + ", ".join(str(ipaddress.ip_address("10.200.0.1") + i) for i in range(999))
            + "]",
        ),
    ),
    # Membership learnt from the fabric starts with this server alone: no peers yet.
    "alone": lambda: plan(
        base=BASE.replace(
            "members: [10.2.3.2, 10.2.1.2, 10.2.2.2]",
            'membership: {community: "65000:4242", underlay_prefixes: [10.2.0.0/16]}',
        )
    ),
}


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    """A namespace with the two overlay devices, deleted afterwards."""
    require_rescue_host()
    name = unique_lab_name("rxnft")
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "anycast-rsc", "type", "vxlan", "id", "1", "dstport", "4800")
        _ip("-n", name, "link", "add", "anycast-fb", "type", "vxlan", "id", "2", "dstport", "4800")
        yield name
    finally:
        _ip("netns", "delete", name)


def nft_check(namespace: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-c", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("mode", list(RenderMode))
def test_the_kernel_accepts_the_rendered_table(namespace: str, name: str, mode: RenderMode) -> None:
    p: RescuePlan = PLANS[name]()
    for family in p.families:
        text = render_table(p, family, mode=mode).text
        result = nft_check(namespace, text)
        assert result.returncode == 0, f"{family.value}:\n{result.stderr}"


def test_the_check_can_fail(namespace: str) -> None:
    """A broken table is refused, so the test above can tell."""
    text = render_table(plan(), plan().families[0]).text.replace("ct state", "ct stat")
    assert nft_check(namespace, text).returncode != 0


def _nft(namespace: str, *argv: str, script: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", *argv],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_second_emptying_of_registered_empties_that_set_alone(namespace: str) -> None:
    """``registrations_script`` on a loaded table: ``registered`` loses its flows, the
    other flow sets keep theirs (rescue.reregistration)."""
    flow = "198.18.0.1 . 40000 . 10.255.0.1 . 8080"

    def elements(name: str) -> int:
        document = json.loads(_nft(namespace, "-j", "list", "set", "ip", "anycast_rescue", name))
        return sum(len(o["set"].get("elem", [])) for o in document["nftables"] if "set" in o)

    _nft(namespace, "-f", "-", script=render_table(plan(), Family.IPV4).text)
    try:
        for name in ("registered", "probation"):
            _nft(namespace, "add", "element", "ip", "anycast_rescue", name, f"{{ {flow} }}")
        assert (elements("registered"), elements("probation")) == (1, 1)
        _nft(namespace, "-f", "-", script=registrations_script(Family.IPV4))
        assert (elements("registered"), elements("probation")) == (0, 1)
    finally:
        _nft(
            namespace,
            "-f",
            "-",
            script="delete table ip anycast_rescue\ndelete table netdev anycast_rescue\n",
        )
