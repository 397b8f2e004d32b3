"""ExaBGP configuration rendering, read back with ExaBGP's own tokeniser."""

from __future__ import annotations

import string

import pytest
from exabgp.configuration.core.format import tokens
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.config import BgpConfig
from anycast_announcer.config.syntax import md5_password_problem, quoted
from anycast_announcer.exabgp.render import render_config, render_environment

ALLOWED_IN_PASSWORD = "".join(
    char for char in string.printable if char not in string.whitespace + "\"'\\"
)


def exabgp_words(text: str) -> list[list[str]]:
    """The statements ExaBGP reads from ``text``, line by line as its Tokeniser does."""
    statements: list[list[str]] = []
    for line in text.splitlines():
        for parsed in tokens([line.rstrip()]):
            statements.append([word for _, _, word in parsed])
    return statements


def bgp_with_password(password: str) -> BgpConfig:
    return BgpConfig.model_validate(
        {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            "peers": [{"address": "10.0.1.1", "peer_as": 65100, "md5_password": password}],
        }
    )


def test_renders_one_neighbor_per_peer_with_its_family() -> None:
    bgp = BgpConfig.model_validate(
        {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            "hold_time": 3,
            "peers": [
                {
                    "address": "10.0.1.1",
                    "peer_as": 65100,
                    "local_address": "10.0.1.2",
                    "md5_password": "s3cret",
                },
                {"address": "fd00:1::1", "peer_as": 65100},
            ],
        }
    )
    text = render_config(bgp, ["/usr/bin/python3", "-m", "relay", "/run/x/api.sock"])
    assert 'run "/usr/bin/python3" "-m" "relay" "/run/x/api.sock";' in text
    first, second = text.split("neighbor ")[1:]
    assert first.startswith("10.0.1.1 {")
    assert "local-address 10.0.1.2;" in first
    assert 'md5-password "s3cret";' in first
    assert "md5-base64 false;" in first
    assert "family { ipv4 unicast; }" in first
    assert "hold-time 3;" in first
    assert second.startswith("fd00:1::1 {")
    assert "local-address" not in second
    assert "family { ipv6 unicast; }" in second
    # Routes come only from us, and a flapped session must not replay old ones.
    assert text.count("adj-rib-out false;") == 2
    assert text.count("neighbor-changes;") == 2


def test_environment_fails_closed() -> None:
    """ExaBGP dies with our relay and never opens a listening socket or named pipe."""
    env = render_environment("root")
    assert env["exabgp.api.terminate"] == "true"
    assert env["exabgp.api.respawn"] == "false"
    assert env["exabgp.api.cli"] == "false"
    assert env["exabgp.tcp.bind"] == ""
    assert env["exabgp.daemon.user"] == "root"


@given(st.text(alphabet=ALLOWED_IN_PASSWORD, min_size=1, max_size=80))
def test_exabgp_reads_every_allowed_password_exactly(password: str) -> None:
    """Whatever the validation lets through reaches ExaBGP byte for byte (no escapes)."""
    assert md5_password_problem(password) is None
    statements = exabgp_words(render_config(bgp_with_password(password), ["/bin/true"]))
    assert ["md5-password", password, ";"] in statements


@pytest.mark.parametrize(
    "password", ["Pa\\ss", "x\\u0022y", 'a"b', "a'b", "a b", "a\tb", "caf\u00e9"]
)
def test_passwords_exabgp_would_read_differently_are_refused(password: str) -> None:
    """``Pa\\ss`` became ``Pass`` in ExaBGP; such passwords never get that far."""
    assert md5_password_problem(password) is not None
    bgp = bgp_with_password("placeholder")
    bgp.peers[0].__dict__["md5_password"] = password  # what validation would have refused
    with pytest.raises(ValueError, match="md5_password") as raised:
        render_config(bgp, ["/bin/true"])
    assert password not in str(raised.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/python3", "-m", "relay", "/run/dir with blanks/api.sock"],
        ["/opt/my venv/bin/python", "-m", "relay", "/run/a#b;c{d}/api.sock"],
        ["/usr/bin/python3", "-m", "relay", "--watchdog", "5", "/run/x/api.sock"],
    ],
)
def test_run_line_is_one_word_per_argument(argv: list[str]) -> None:
    """Blanks, '#', ';' and braces in a path stay inside their argument."""
    statements = exabgp_words(render_config(bgp_with_password("pw"), argv))
    assert ["run", *argv, ";"] in statements


@pytest.mark.parametrize("argument", ["/run/quo'te", '/run/quo"te', "/run/back\\slash", "/x\n"])
def test_run_argument_that_cannot_be_quoted_is_refused(argument: str) -> None:
    with pytest.raises(ValueError, match="command line"):
        render_config(bgp_with_password("pw"), ["/bin/true", argument])


def test_quoted_names_what_not_the_value() -> None:
    with pytest.raises(ValueError, match="the secret thing") as raised:
        quoted("hidden\\value", "the secret thing")
    assert "hidden" not in str(raised.value)
