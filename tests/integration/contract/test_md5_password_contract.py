"""Contract: an MD5 password with every character our validation allows means the same
bytes to FRR and to ExaBGP.

ExaBGP resolves backslash escapes in its config before tokenising, so ``Pa\\ss`` reached
the kernel as ``Pass`` and the session never came up; backslashes and quotes are now
refused by check-config. What remains allowed (printable ASCII but blanks, quotes and
the backslash) includes ``#``, ``;``, braces and brackets, which ExaBGP's tokeniser would
take as syntax outside quotes. This runs a real sidecar (real ExaBGP) against leaf1 with
such a password configured on both sides: the session must establish and the route arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from anycast_announcer.config.syntax import MD5_PASSWORD_MAX, md5_password_problem
from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    Running,
    Sidecar,
    announced_via,
    sidecar_config,
)
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
PUNCTUATION = "!#$%&()*+,-./:;<=>?@[]^_`{|}~"
"""Every printable ASCII punctuation character check-config accepts in a password."""
TRICKY = "a" + "".join(f"{char}{index % 10}" for index, char in enumerate(PUNCTUATION))


def established(lab: Lab) -> bool:
    data = lab.vtysh_json("leaf1", f"show bgp neighbors {SRV1} json")
    return bool(data.get(SRV1, {}).get("bgpState") == "Established")


@pytest.fixture
def leaf_password(lab: Lab) -> Iterator[Callable[[str], None]]:
    """Sets leaf1's `neighbor password` for srv1 (argv, no shell); removed afterwards."""

    def configure(line: str) -> None:
        lab.run(
            "leaf1",
            ["vtysh", "-N", lab.ns("leaf1"), "-c", "conf t", "-c", "router bgp 65100", "-c", line],
        )

    yield lambda password: configure(f"neighbor {SRV1} password {password}")
    configure(f"no neighbor {SRV1} password")


def md5_sidecar(running: Running, password: str) -> Sidecar:
    """A sidecar on srv1 with one IPv4 session to leaf1, signed with ``password``."""
    config = sidecar_config("srv1", 10_000)
    config["bgp"]["peers"] = [{"address": "10.0.1.1", "peer_as": 65100, "md5_password": password}]
    config["prefixes"] = config["prefixes"][:1]  # IPv4 only: the one signed session
    sidecar = Sidecar(running.lab, "srv1", config, running.workdir)
    running.sidecars.append(sidecar)  # stopped by the fixture, whatever happens
    sidecar.start()
    return sidecar


def test_the_password_covers_every_allowed_punctuation_character() -> None:
    """So the test below really exercises what validation lets through."""
    assert md5_password_problem(TRICKY) is None
    allowed = {chr(code) for code in range(0x21, 0x7F) if md5_password_problem(chr(code)) is None}
    assert {char for char in allowed if not char.isalnum()} == set(PUNCTUATION)
    assert len(TRICKY) <= MD5_PASSWORD_MAX


@pytest.mark.parametrize(
    "password", [TRICKY, "Z" + PUNCTUATION[::-1] + "x" * (MD5_PASSWORD_MAX - 31)]
)
def test_session_establishes_with_a_tricky_password(
    lab: Lab,
    running: Running,
    leaf_password: Callable[[str], None],
    password: str,
) -> None:
    assert len(password) <= MD5_PASSWORD_MAX
    running.service("srv1")
    leaf_password(password)
    sidecar = md5_sidecar(running, password)
    wait_until(
        lambda: established(lab),
        timeout=30,
        message=f"no session with password {password!r}:\n{sidecar.log_tail()}",
    )
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=15,
        message="the route did not arrive over the MD5 session",
    )
    assert ANYCAST_V4 in lab.vtysh("leaf1", "show ip route bgp")


def test_a_different_password_on_one_side_never_establishes(
    lab: Lab, running: Running, leaf_password: Callable[[str], None]
) -> None:
    """The control: the test above can fail (one character differs, nothing comes up)."""
    running.service("srv1")
    leaf_password(TRICKY)
    sidecar = md5_sidecar(running, TRICKY[:-1] + "X")
    wait_until(
        lambda: sidecar.events("exabgp_connected"),
        timeout=30,
        message="ExaBGP never started",
    )
    with pytest.raises(AssertionError):
        wait_until(lambda: established(lab), timeout=6, message="established (must not)")
