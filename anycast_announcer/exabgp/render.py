"""ExaBGP's configuration file and environment, rendered from ours (pure).

Every text value is written quoted and checked by ``config.syntax`` first: ExaBGP resolves
backslash escapes before it tokenises, and quotes end a quoted word, so a value with
either could change what ExaBGP reads. Numbers and addresses are rendered from ints and
``ipaddress`` objects and need no quoting.
"""

from __future__ import annotations

from collections.abc import Sequence

from anycast_announcer.config import BgpConfig
from anycast_announcer.config.syntax import md5_password_problem, quoted

__all__ = ["PROCESS_NAME", "render_config", "render_environment"]

PROCESS_NAME = "anycast-announcer"


def render_config(
    bgp: BgpConfig,
    api_argv: Sequence[str],
    *,
    receive_routes: bool = False,
    end_of_rib: bool = False,
) -> str:
    """The ``exabgp.conf`` text: one API process and one neighbor block per peer.

    ``receive_routes``: ExaBGP also hands our process every UPDATE the peers send, parsed
    as JSON (rescue membership learns member routes from them). ``end_of_rib``: ask the
    peers for End-of-RIB markers (rescue membership's start-up gate waits for one).
    """
    receive = " receive { parsed; update; }" if receive_routes else ""
    # FRR sends an End-of-RIB only to a peer that advertised graceful restart (RFC 4724
    # capability; FRR 8.4 and later check it), and the start-up gate of learnt membership
    # waits for that marker. ExaBGP cannot advertise the capability without address
    # families, so a leaf in helper mode would keep our routes after an unclean loss
    # for the restart time: 1 s, the least there is; the leaf guide turns helper mode
    # off for servers (``neighbor X graceful-restart-disable``), which keeps none.
    # Without membership nothing waits for End-of-RIB, so nothing is advertised.
    capability = ["    capability { graceful-restart 1; }"] if end_of_rib else []
    lines = [
        "# Rendered by anycast-announcer at start; edits here are overwritten.",
        f"process {PROCESS_NAME} {{",
        # Quoted, so a path with blanks (a run_dir, a venv) stays one argument.
        "    run "
        + " ".join(quoted(arg, "the API process's command line") for arg in api_argv)
        + ";",
        "    encoder json;",
        "}",
    ]
    for peer in bgp.peers:
        family = "ipv4 unicast" if peer.address.version == 4 else "ipv6 unicast"
        lines += [
            "",
            f"neighbor {peer.address} {{",
            f"    router-id {bgp.router_id};",
            f"    local-as {bgp.local_as};",
            f"    peer-as {peer.peer_as};",
            f"    hold-time {bgp.hold_time};",
        ]
        if peer.local_address is not None:
            lines.append(f"    local-address {peer.local_address};")
        if peer.md5_password is not None:
            lines += _md5_lines(peer.md5_password)
        lines += [
            *capability,
            f"    family {{ {family}; }}",
            # Routes only ever come from our API process; a peer flap must not replay a
            # route we withdrew meanwhile, so we re-send on session up ourselves.
            "    adj-rib-out false;",
            f"    api {{ processes [ {PROCESS_NAME} ]; neighbor-changes;{receive} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _md5_lines(password: str) -> list[str]:
    # Validated with the config already; checked again because a wrong byte here means a
    # session that silently never comes up. The message never contains the password.
    if md5_password_problem(password) is not None:
        raise ValueError("md5_password cannot be written into ExaBGP's configuration")
    return [
        f"    md5-password {quoted(password, 'md5_password')};",
        # Never guess: a password of only [a-f0-9] would otherwise be read as base64.
        "    md5-base64 false;",
    ]


def render_environment(user: str) -> dict[str, str]:
    """ExaBGP settings passed as environment variables (they override any exabgp.env)."""
    return {
        "exabgp.daemon.user": user,
        "exabgp.daemon.daemonize": "false",
        "exabgp.daemon.pid": "",
        "exabgp.daemon.drop": "false",
        # No named pipes: our API process is the only control channel.
        "exabgp.api.cli": "false",
        "exabgp.api.ack": "true",
        "exabgp.api.encoder": "json",
        # If our API process dies, ExaBGP must die too: no route outlives its checker.
        "exabgp.api.respawn": "false",
        "exabgp.api.terminate": "true",
        # Never listen for incoming BGP: we connect to our leaves.
        "exabgp.tcp.bind": "",
        "exabgp.log.destination": "stdout",
        "exabgp.log.level": "WARNING",
        "exabgp.log.routes": "false",
        "exabgp.log.packets": "false",
        "exabgp.log.parser": "false",
        "exabgp.log.configuration": "false",
        "exabgp.log.reactor": "false",
        "exabgp.log.processes": "false",
        "exabgp.log.network": "false",
        "exabgp.log.statistics": "false",
        "exabgp.log.message": "false",
        "exabgp.log.rib": "false",
        "exabgp.log.timers": "false",
        "exabgp.log.daemon": "true",
        "exabgp.log.short": "true",
        "exabgp.cache.attributes": "true",
    }
