"""``anycast-netlab``: containerlab's deploy/inspect/exec/destroy verbs on network namespaces."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence

from anycast_announcer.netlab.errors import NetlabError
from anycast_announcer.netlab.lab import Lab, NodeStatus
from anycast_announcer.netlab.plan import BgpWait

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        lab = Lab.from_file(args.topo, name=args.name)
        return int(args.handler(lab, args))
    except NetlabError as exc:
        print(f"anycast-netlab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("anycast-netlab: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anycast-netlab",
        description="Run containerlab topology files on Linux network namespaces (no Docker).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-t", "--topo", required=True, help="containerlab .clab.yml file")
        sub.add_argument("--name", help="lab name (default: the topology's name)")
        return sub

    deploy = verb("deploy", "create the namespaces, links, exec commands and FRR routers")
    deploy.epilog = (
        "A node that binds /etc/frr/frr.conf runs FRR (daemons from its bound "
        "/etc/frr/daemons). There are no containers: in cmd and exec, arguments "
        "naming a bind's container path (or a path under it, or after '=') are "
        "replaced by the bind's host source."
    )
    deploy.add_argument(
        "--no-cmd", action="store_true", help="do not start the nodes' cmd processes"
    )
    deploy.add_argument(
        "--wait-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for BGP sessions (default: %(default)s)",
    )
    deploy.add_argument(
        "--wait-bgp",
        choices=[w.value for w in BgpWait],
        default=BgpWait.ROUTERS.value,
        help="which BGP sessions must be Established: between routers (default), all, or none",
    )
    deploy.set_defaults(handler=_deploy)

    inspect = verb("inspect", "show nodes, namespaces, processes and addresses")
    inspect.add_argument("--format", choices=["table", "json"], default="table")
    inspect.set_defaults(handler=_inspect)

    run = verb("exec", "run a command in a node's namespace, passing its exit code through")
    run.add_argument("--node", required=True)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    run.set_defaults(handler=_exec)

    destroy = verb("destroy", "kill the lab's processes and delete its namespaces")
    destroy.set_defaults(handler=_destroy)
    return parser


def _deploy(lab: Lab, args: argparse.Namespace) -> int:
    started = time.monotonic()
    lab.deploy(
        start_cmds=not args.no_cmd, wait_timeout=args.wait_timeout, wait_bgp=BgpWait(args.wait_bgp)
    )
    print(
        f"lab {lab.name} deployed in {time.monotonic() - started:.1f}s "
        f"({len(lab.topology.nodes)} nodes, {len(lab.topology.links)} links)"
    )
    return 0


def _destroy(lab: Lab, args: argparse.Namespace) -> int:
    lab.destroy()
    print(f"lab {lab.name} destroyed")
    return 0


def _exec(lab: Lab, args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise NetlabError("exec needs a command after --")
    ns = lab.ns(args.node)
    if not lab.is_deployed():
        raise NetlabError(f"lab {lab.name} is not deployed (no namespace {ns})")
    result = subprocess.run(["ip", "netns", "exec", ns, *command], check=False)
    return result.returncode


def _inspect(lab: Lab, args: argparse.Namespace) -> int:
    statuses = lab.inspect()
    if args.format == "json":
        print(json.dumps([_status_json(s) for s in statuses], indent=2))
        return 0
    rows = [("NODE", "NAMESPACE", "KIND", "STATE", "CMD", "PROCESSES", "ADDRESSES")]
    for s in statuses:
        procs = ",".join(f"{p.name}:{p.pid}{'' if p.alive else '(dead)'}" for p in s.processes)
        addrs = ",".join(f"{ifname}={addr}" for ifname, addr in s.addresses)
        rows.append(
            (s.node, s.namespace, s.kind, s.state, s.command or "-", procs or "-", addrs or "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    return 0


def _status_json(status: NodeStatus) -> dict[str, object]:
    return {
        "node": status.node,
        "namespace": status.namespace,
        "kind": status.kind,
        "image": status.image,
        "router": status.router,
        "state": status.state,
        "command": status.command,
        "processes": [{"name": p.name, "pid": p.pid, "alive": p.alive} for p in status.processes],
        "addresses": [{"interface": i, "address": a} for i, a in status.addresses],
    }


if __name__ == "__main__":
    sys.exit(main())
