"""``anycast-announcer rescue install|remove|status``: the data path without a sidecar.

- ``install -c CONFIG``: reconcile the kernel to the config's ``rescue:`` section (the
  same ``apply`` the sidecar performs); safe to repeat, a no-op when nothing differs.
  With ``--watch`` it stays in the foreground and repairs the data path whenever
  nftables reports a change to its tables (a host firewall's ``flush ruleset``), as a
  sidecar does: the repair of a data-path-only member (run it as a service). When the
  install moved buckets of the flow directory, it also empties ``registered`` once more
  ``reregister_after`` seconds later, as the sidecar does (``rescue.reregistration``).
- ``remove``: delete the tables and overlay devices; the host is as it was before the
  first install. Connections being rescued to or through this server break, so remove
  only a server whose route is withdrawn and whose connections are gone, or the whole
  group.
- ``status [-c CONFIG] [--json]``: what is installed, every counter, and with a config
  whether the installed data path is the one it describes.

Exit codes as for the other commands: 0 success, 1 the kernel refused or failed, 2 the
config or arguments are wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from functools import partial
from typing import Any

from anycast_announcer.config import Config, ConfigError, load_config
from anycast_announcer.logging import configure_logging
from anycast_announcer.rescue.kernel import ApplyReport
from anycast_announcer.rescue.model import RescuePlan, build_plan
from anycast_announcer.rescue.mtu import mtu_warnings

__all__ = ["add_parser", "check_warnings", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
_PEERS_SHOWN = 8


def add_parser(commands: Any) -> None:
    """Add the ``rescue`` command group to the main parser's subcommands."""
    rescue = commands.add_parser("rescue", help="install, remove or inspect flow rescue")
    actions = rescue.add_subparsers(dest="rescue_command", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="reconcile the kernel data path to CONFIG")
    install.add_argument("-c", "--config", required=True, help="configuration file (YAML)")
    install.add_argument(
        "--watch",
        action="store_true",
        help="stay in the foreground and repair the tables whenever they are changed",
    )
    remove = actions.add_parser("remove", help="delete the data path; restores the host")
    remove.add_argument("-c", "--config", help="not needed; accepted for symmetry")
    status = actions.add_parser("status", help="installed data path and counters")
    status.add_argument("-c", "--config", help="also say whether it matches this config")
    status.add_argument("--json", action="store_true", help="print JSON")


def check_warnings(config: Config) -> list[str]:
    """check-config's rescue warnings: the underlay MTU, where this host can tell it.

    With ``rescue.underlay_mtu`` set, the config alone decides; otherwise the MTU of the
    interfaces routing to the members is used when this host is one of them, and
    nothing is said elsewhere (a config checked on a build machine).
    """
    from anycast_announcer.rescue.kernel import RescueError, host_facts

    rescue = config.rescue
    if rescue is None:
        return []
    named = rescue.local_address or (rescue.members[0] if rescue.members else None)
    if rescue.underlay_mtu is not None and named is not None:
        local, mtu = named, rescue.underlay_mtu
    else:
        try:
            facts = host_facts(rescue)
        except (RescueError, OSError):
            return []
        local, mtu = facts.local_address, facts.underlay_mtu
    return mtu_warnings(build_plan(config, local_address=local, underlay_mtu=mtu))


def _config(path: str) -> Config | None:
    try:
        config = load_config(path)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return None
    if config.rescue is None:
        print(f"{path}: rescue: the config has no rescue section", file=sys.stderr)
        return None
    return config


def _plan(config: Config, path: str) -> RescuePlan | None:
    """The plan for this host, or None after printing why there is none."""
    # The kernel shell (pyroute2) is only imported by the commands that need it.
    from anycast_announcer.rescue.kernel import RescueError, host_facts

    assert config.rescue is not None
    try:
        facts = host_facts(config.rescue)
    except RescueError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return None
    return build_plan(
        config,
        local_address=facts.local_address,
        underlay_mtu=facts.underlay_mtu,
        fabric_interfaces=facts.fabric_interfaces,
    )


def _install(path: str, *, watch: bool = False) -> int:
    from anycast_announcer.rescue.kernel import RescueError, RescueKernel

    config = _config(path)
    plan = _plan(config, path) if config is not None else None
    if plan is None:
        return EXIT_USAGE
    for warning in mtu_warnings(plan):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    if config is not None and config.rescue is not None and config.rescue.membership is not None:
        # No BGP here: a data-path-only member knows only its static members, and someone
        # else (its leaf, docs/rescue.md) must announce its member route for it.
        print(
            f"{path}: warning: rescue.membership: rescue install learns no members; it "
            f"installs the {len(plan.peers)} static peer(s) in rescue.members, and this "
            "server's member route must be announced for it (docs/rescue.md)",
            file=sys.stderr,
        )
    configure_logging("auto", "warning")  # the kernel shell logs; this command prints
    try:
        report = RescueKernel().apply(plan)
    except RescueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    shown = [str(peer.address) for peer in plan.peers[:_PEERS_SHOWN]]
    if len(plan.peers) > _PEERS_SHOWN:
        shown.append(f"... {len(plan.peers)} in all")
    peers = ", ".join(shown)
    if not report.changed:
        print(f"rescue: already installed (member {plan.me.address}; peers {peers})")
        return _watch(plan) if watch else EXIT_OK
    print(f"rescue: installed (member {plan.me.address}; peers {peers})")
    print(
        f"  {len(report.link_steps)} device steps, tables written: "
        f"{', '.join(report.tables_written) or 'none'}"
    )
    if report.took_over:
        print(
            f"  took over established connections ({', '.join(report.took_over)}): "
            f"{report.adopted} entered into conntrack, {report.liberalized} relaxed, "
            f"{report.forgotten} stale entries forgotten"
        )
    again = _reregister_after(plan, report)
    if report.registrations_forgotten:
        print(
            f"  the bucket map changed: registrations forgotten "
            f"({', '.join(report.registrations_forgotten)}); {_when_again(again, watch)}"
        )
    return _watch(plan, again) if watch else EXIT_OK


def _reregister_after(plan: RescuePlan, report: ApplyReport) -> float:
    """Seconds until ``registered`` is to be emptied once more; 0: not again."""
    if not report.registrations_forgotten or plan.directory is None:
        return 0.0
    return plan.directory.reregister_after


def _when_again(again: float, watch: bool) -> str:
    if not again:
        return "not again (reregister_after: 0)"
    if watch:
        return f"once more in {again:g} s"
    # This process exits: a late directory member waits for register_interval.
    return f"not again (--watch would, {again:g} s later)"


def _tables_back(started: float) -> None:
    took = (time.monotonic() - started) * 1000
    print(f"rescue: tables back in {took:.0f} ms at={time.time():.3f}", flush=True)


def _repaired(report: ApplyReport, started: float) -> None:
    took = (time.monotonic() - started) * 1000
    print(
        f"rescue: repaired in {took:.0f} ms at={time.time():.3f} "
        f"(tables {', '.join(report.tables_written) or 'none'}; "
        f"adopted {report.adopted}, relaxed {report.liberalized})",
        flush=True,
    )


def _watch(plan: RescuePlan, reregister_after: float = 0.0) -> int:
    """Repair the data path whenever nftables says its tables changed; until a signal.
    ``reregister_after``: empty ``registered`` once more that many seconds from now."""
    from anycast_announcer.rescue.kernel import RescueError, RescueKernel
    from anycast_announcer.rescue.watch import NftablesWatch

    kernel, watch = RescueKernel(), NftablesWatch()
    try:
        watch.open()
    except OSError as error:
        print(f"error: cannot watch nftables changes: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print("rescue: watching the tables; repairs are printed here", flush=True)

    async def repair_forever() -> None:
        while True:
            change = await watch.changed()
            started = time.monotonic()
            try:
                if change.deleted:  # flushed: write them back before reading anything
                    back = partial(_tables_back, started)
                    report = await asyncio.to_thread(kernel.restore, plan, change.deleted, back)
                    _repaired(report, started)
                # A no-op (reads only) when the change was ours or left us in sync.
                report = await asyncio.to_thread(partial(kernel.apply, plan, warm=False))
            except RescueError as error:
                print(f"error: repair failed: {error}", file=sys.stderr, flush=True)
                continue
            if report.changed:
                _repaired(report, started)

    async def reregister() -> None:
        # One change, one deadline: the sidecar's keeper needs Reregistration's
        # bookkeeping for changes that follow each other; this process applies one plan.
        await asyncio.sleep(reregister_after)
        try:
            families = await asyncio.to_thread(kernel.forget_registrations, plan)
        except RescueError as error:
            print(f"error: forgetting registrations failed: {error}", file=sys.stderr, flush=True)
            return
        print(
            f"rescue: registrations forgotten once more ({', '.join(families) or 'none'}) "
            f"at={time.time():.3f}",
            flush=True,
        )

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(repair_forever())
            if reregister_after > 0:
                group.create_task(reregister())

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        watch.close()
    return EXIT_OK


def _remove() -> int:
    from anycast_announcer.rescue.kernel import RescueError, RescueKernel

    configure_logging("auto", "warning")
    try:
        report = RescueKernel().remove()
    except RescueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not report.tables and not report.devices and not report.guard:
        print("rescue: nothing installed")
    else:
        guard = f"; reset guard on {', '.join(report.guard)}" if report.guard else ""
        print(
            f"rescue: removed tables {', '.join(report.tables) or 'none'}; "
            f"devices {', '.join(report.devices) or 'none'}{guard}"
        )
    return EXIT_OK


def _status(path: str | None, as_json: bool) -> int:
    from anycast_announcer.rescue.kernel import RescueError, RescueKernel

    configure_logging("auto", "warning")
    kernel = RescueKernel()
    plan = None
    if path is not None:
        config = _config(path)
        plan = _plan(config, path) if config is not None else None
        if plan is None:
            return EXIT_USAGE
    try:
        installed = kernel.read_installed()
        counters = kernel.counters()
        in_sync = kernel.in_sync(plan, installed) if plan is not None else None
    except RescueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    document = {**installed.as_json(), "counters": counters.as_json(), "in_sync": in_sync}
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(_format_status(document))
    return EXIT_OK


def _format_status(document: dict[str, Any]) -> str:
    lines = []
    if not document["devices"] and not document["tables"]:
        lines.append("rescue: not installed")
    for name, device in document["devices"].items():
        lines.append(
            f"device {name}: vni {device['vni']} port {device['port']} local {device['local']} "
            f"mtu {device['mtu']} {'up' if device['up'] else 'DOWN'}; peers "
            f"{', '.join(device['peers']) or 'none'}"
        )
    for family, table in document["tables"].items():
        lines.append(f"table {family} anycast_rescue: {table['mode'] or 'unknown'}")
    if document["reset_guard"]:
        lines.append(f"reset guard on: {', '.join(document['reset_guard'])}")
    if document["in_sync"] is not None:
        lines.append(f"matches the config: {'yes' if document['in_sync'] else 'NO'}")
    counters = document["counters"]
    lines.append(
        f"{'PEER':<28}{'FORWARDED':>12}{'RECEIVED':>12}{'REFUSED':>10}"
        f"{'FEEDBACK TX':>13}{'FEEDBACK RX':>13}"
    )
    for peer in counters["peers"]:
        lines.append(
            f"{peer['peer']:<28}{peer['forwarded']['packets']:>12}"
            f"{peer['received']['packets']:>12}{peer['refused']['packets']:>10}"
            f"{peer['feedback_sent']['packets']:>13}{peer['feedback_received']['packets']:>13}"
        )
    lines.append(
        "replicated {replicated} · orphans {orphans} · icmp relayed {icmp} · refused: "
        "overlay {overlay}, underlay {underlay}  (packets)".format(
            replicated=counters["replicated"]["packets"],
            orphans=counters["orphans"]["packets"],
            icmp=counters["icmp_relayed"]["packets"],
            overlay=counters["overlay_refused"]["packets"],
            underlay=counters["underlay_refused"]["packets"],
        )
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``rescue ACTION`` from parsed arguments."""
    if args.rescue_command == "install":
        return _install(args.config, watch=args.watch)
    if args.rescue_command == "remove":
        return _remove()
    return _status(args.config, args.json)
