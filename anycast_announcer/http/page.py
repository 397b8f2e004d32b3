"""The status page (``GET /``): one server-rendered HTML page a person reads at a glance.

No JavaScript at all (the page refreshes itself with a meta tag), and every value from
the status is escaped: service names, reasons and command output are user data. The
response also carries a Content-Security-Policy that forbids scripts, as a second fence.
The history section (timelines, sparklines) is inline SVG drawn by ``history_page``.
"""

from __future__ import annotations

import math

from anycast_announcer.historymodels import SidecarHistory
from anycast_announcer.http.history_page import HISTORY_STYLE, render_history
from anycast_announcer.http.html import STATE_CLASSES, text
from anycast_announcer.status import (
    PeerStatus,
    PrefixStatus,
    RescueStatus,
    ServiceStatus,
    SidecarStatus,
    iso_time,
)

__all__ = ["CONTENT_SECURITY_POLICY", "render_page"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
REFRESH_SECONDS = 5

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d232a; background: #f6f7f9; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem 0; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem 0; }
.meta { color: #5b6672; font-size: .9rem; }
.problem { color: #a11; font-weight: bold; }
.prefixes { display: flex; flex-wrap: wrap; gap: 1rem; }
.prefix { background: #fff; border: 1px solid #d6dbe1; border-radius: 8px; padding: 1rem;
          min-width: 18rem; }
.prefix .name { font-family: ui-monospace, monospace; font-size: 1.15rem; font-weight: bold; }
.badge { display: inline-block; border-radius: 6px; padding: .1rem .5rem; color: #fff;
         font-weight: bold; text-transform: uppercase; letter-spacing: .03em; }
.big { font-size: 1.5rem; padding: .3rem .9rem; margin: .5rem 0; }
.announced, .up { background: #1a7f37; }
.withdrawn, .down { background: #c62828; }
.draining, .dampened { background: #c77700; }
.drained { background: #8250df; }
.unknown, .other { background: #6e7781; }
.reason { margin: .25rem 0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d6dbe1; padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: #eef1f4; }
td.mono { font-family: ui-monospace, monospace; }
"""


def _badge(state: str, *, big: bool = False) -> str:
    css = state if state in STATE_CLASSES else "other"
    size = " big" if big else ""
    return f'<span class="badge {css}{size}" data-state="{text(state)}">{text(state)}</span>'


def _when(at: float | None, now: float) -> str:
    iso = iso_time(at)
    if at is None or iso is None:
        return "never"
    ago = now - at
    if not math.isfinite(ago):
        return text(iso)
    if ago < 0:
        relative = "in the future"
    elif ago < 120:
        relative = f"{ago:.0f} s ago"
    elif ago < 7200:
        relative = f"{ago / 60:.0f} min ago"
    elif ago < 172800:
        relative = f"{ago / 3600:.1f} h ago"
    else:
        relative = f"{ago / 86400:.0f} days ago"
    return f'<time datetime="{text(iso)}" title="{text(iso)}">{text(relative)}</time>'


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def _bandwidth(mbps: float | None) -> str:
    if mbps is None or not math.isfinite(mbps):
        return "no bandwidth set"
    if mbps >= 1000:
        return f"{mbps / 1000:g} Gbit/s"
    return f"{mbps:g} Mbit/s"


def _prefix_card(prefix: PrefixStatus) -> str:
    lines = [
        f'<section class="prefix" data-prefix="{text(prefix.prefix)}">',
        f'<div class="name">{text(prefix.prefix)}</div>',
        f"<div>{_badge(prefix.state, big=True)}</div>",
        f'<div class="reason">{text(prefix.reason)}</div>',
        f'<div class="meta">{text(prefix.require)} of: '
        f"{text(', '.join(prefix.services))} &middot; {text(_bandwidth(prefix.bandwidth_mbps))}"
        "</div>",
        f'<div class="meta">address on {text(prefix.interface)}: '
        f"{'yes' if prefix.address_present else '<b>no</b>'}</div>",
    ]
    if prefix.drain_phase != "none":
        detail = f"drain: {prefix.drain_phase}"
        if prefix.drain_reason:
            detail += f" ({prefix.drain_reason})"
        if prefix.established_connections is not None:
            detail += f", {prefix.established_connections} connections left"
        lines.append(f'<div class="meta">{text(detail)}</div>')
    if prefix.dampening_penalty:
        lines.append(f'<div class="meta">dampening penalty {prefix.dampening_penalty:.0f}</div>')
    lines.append("</section>")
    return "\n".join(lines)


def _last_result(service: ServiceStatus, now: float) -> str:
    if not service.last_results:
        return "no probe yet"
    last = service.last_results[-1]
    verdict = "ok" if last.ok else "failed"
    latency = f"{last.latency * 1000:.1f} ms" if math.isfinite(last.latency) else "?"
    return f"{verdict}, {text(latency)}: {text(last.reason)} ({_when(last.at, now)})"


def _service_row(service: ServiceStatus, now: float) -> str:
    change = _when(service.last_change_at, now)
    if service.last_change_reason:
        change += f": {text(service.last_change_reason)}"
    return (
        f'<tr data-service="{text(service.name)}"><td class="mono">{text(service.name)}</td>'
        f"<td>{text(service.check_type)}</td><td>{_badge(service.state)}</td>"
        f"<td>{_last_result(service, now)}</td>"
        f"<td>{service.consecutive_successes} ok / {service.consecutive_failures} failed "
        f"(rise {service.rise}, fall {service.fall})</td><td>{change}</td></tr>"
    )


def _peer_row(peer: PeerStatus, now: float) -> str:
    change = _when(peer.last_change_at, now)
    if peer.last_change_reason:
        change += f": {text(peer.last_change_reason)}"
    return (
        f'<tr data-peer="{text(peer.address)}"><td class="mono">{text(peer.address)}</td>'
        f"<td>AS{peer.peer_as}</td><td>{_badge(peer.state)}</td><td>{change}</td>"
        f"<td>{_bfd_cell(peer, now)}</td></tr>"
    )


def _bfd_cell(peer: PeerStatus, now: float) -> str:
    bfd = peer.bfd
    if bfd is None:
        return "off"
    detail = f"remote discriminator {bfd.remote_discriminator}"
    if bfd.transmit_interval is not None and bfd.detection_time is not None:
        detail += (
            f", every {bfd.transmit_interval * 1000:.0f} ms,"
            f" detection {bfd.detection_time * 1000:.0f} ms"
        )
    if bfd.state != "up":
        detail += f", {text(bfd.local_diag)}"
    detail += f"; {bfd.state_changes} changes, last {_when(bfd.last_change_at, now)}"
    return f"{_badge(bfd.state)} {text(detail)}"


def _rescue_section(rescue: RescueStatus | None, now: float) -> str:
    if rescue is None:
        return ""
    state = "up" if rescue.installed else "down"
    detail = (
        f"member {text(rescue.member or '?')}, applied {_when(rescue.last_applied_at, now)}; "
        f"{rescue.replicated.packets} packets replicated, "
        f"{rescue.icmp_relayed.packets} ICMP errors relayed, {rescue.orphans.packets} orphan "
        "packets reset"
    )
    problem = f'<p class="problem">{text(rescue.last_error)}</p>' if rescue.last_error else ""
    if (membership := rescue.membership) is not None:
        members = ", ".join(
            text(m.address) + ("" if m.present else f" (held down {m.held_for or 0:.0f} s)")
            for m in membership.members
        )
        problem += (
            f'<p id="rescue-members">members learnt from {text(membership.community)} '
            f"routes: {members or 'none'}; member route "
            f"{'announced' if membership.announced else 'not announced'}</p>"
        )
        if (gate := membership.gate) is not None:
            opened = f" ({text(gate.opened_by)})" if gate.opened_by else ""
            deadline = (
                f", opens anyway in {gate.opens_in:.0f} s" if gate.opens_in is not None else ""
            )
            problem += (
                f'<p id="rescue-gate">start-up gate: {text(gate.state)}{opened} since '
                f"{_when(gate.since, now)}{deadline}</p>"
            )
    rows = "\n".join(
        f'<tr data-rescue-peer="{text(peer.peer)}"><td class="mono">{text(peer.peer)}</td>'
        f"<td>{peer.forwarded.packets} / {peer.forwarded.bytes}</td>"
        f"<td>{peer.received.packets} / {peer.received.bytes}</td>"
        f"<td>{peer.refused.packets}</td></tr>"
        for peer in rescue.peers
    )
    return f"""<h2>Flow rescue</h2>
<p id="rescue">{_badge(state)} {detail}</p>
{problem}
<table id="rescue-peers">
<tr><th>peer</th><th>handed to it (packets / bytes)</th><th>rescued from it (packets / bytes)</th>
<th>refused</th></tr>
{rows}
</table>"""


def render_page(status: SidecarStatus, now: float, history: SidecarHistory | None = None) -> str:
    """The page for ``status`` (and ``history``, when given); ``now`` (Unix seconds) only
    phrases times as "5 s ago"."""
    exabgp = status.exabgp
    exabgp_state = "up" if exabgp.running and exabgp.connected else "down"
    exabgp_detail = (
        f"{'running' if exabgp.running else 'not running'}"
        f"{f', pid {exabgp.pid}' if exabgp.pid is not None else ''}, "
        f"{'connected' if exabgp.connected else 'not connected'}, "
        f"{exabgp.restarts} restarts, "
        f"{exabgp.routes_acknowledged} of {exabgp.routes_desired} routes acknowledged"
    )
    reload_problem = ""
    if status.last_reload_error:
        reload_problem = (
            f'<p class="problem">last reload failed: {text(status.last_reload_error)}</p>'
        )
    prefixes = "\n".join(_prefix_card(prefix) for prefix in status.prefixes) or (
        "<p>no prefixes configured</p>"
    )
    services = "\n".join(_service_row(service, now) for service in status.services)
    peers = "\n".join(_peer_row(peer, now) for peer in status.peers)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>anycast-announcer</title>
<style>{_STYLE}{HISTORY_STYLE}</style>
</head>
<body>
<h1>anycast-announcer</h1>
<p class="meta">version {text(status.version)} &middot; up {text(_duration(status.uptime))}
&middot; config {text(status.config_path)} loaded {_when(status.config_loaded_at, now)}
&middot; <a href="/status">JSON</a> &middot; <a href="/metrics">metrics</a></p>
{reload_problem}
<h2>Prefixes</h2>
<div class="prefixes">
{prefixes}
</div>
{render_history(history, status) if history is not None else ""}
<h2>Services</h2>
<table id="services">
<tr><th>service</th><th>check</th><th>state</th><th>last result</th><th>counters</th>
<th>last change</th></tr>
{services}
</table>
<h2>BGP peers</h2>
<table id="peers">
<tr><th>peer</th><th>AS</th><th>state</th><th>last change</th><th>BFD</th></tr>
{peers}
</table>
<h2>ExaBGP</h2>
<p id="exabgp">{_badge(exabgp_state)} {text(exabgp_detail)}</p>
{_rescue_section(status.rescue, now)}
</body>
</html>
"""
