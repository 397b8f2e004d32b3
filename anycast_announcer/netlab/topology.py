"""Parse containerlab topology files into frozen, validated data.

Nothing here touches the network or starts processes; reading the YAML file in
:meth:`Topology.load` is the only I/O.

Merging follows containerlab for the fields this runner uses:

* ``kind``, ``image`` and ``cmd``: the node's value, else its kind's
  (``topology.kinds.<kind>``), else ``topology.defaults``.
* ``exec``: the first non-empty list of node, kind, defaults (lists are not
  concatenated, as in containerlab).
* ``binds``: defaults, then kind, then node, keyed by the container path, so a
  later entry for the same container path replaces an earlier one.
* ``env`` and ``labels``: dictionaries merged with the same precedence.

Relative bind sources are relative to the topology file's directory.

**Bind path rewriting.** There are no containers, so a node sees the host's
filesystem. In a node's ``cmd`` and ``exec`` commands, every argument that is a
bind's container path, or starts with it followed by ``/``, or has it right
after a ``=`` (``--config=/etc/x.yaml``), is replaced by the bind's host source.
The longest matching container path wins.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import yaml

from anycast_announcer.netlab.errors import TopologyError

__all__ = [
    "FRR_CONFIG_PATH",
    "FRR_DAEMONS_PATH",
    "Bind",
    "Endpoint",
    "Link",
    "Node",
    "Topology",
    "parse_daemons",
]

FRR_CONFIG_PATH = "/etc/frr/frr.conf"
FRR_DAEMONS_PATH = "/etc/frr/daemons"

SUPPORTED_KINDS = frozenset({"linux"})
# Linux limits interface names to IFNAMSIZ - 1 bytes.
MAX_IFNAME = 15
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
# Daemons anycast-netlab knows how to start (zebra always runs on an FRR node).
FRR_DAEMONS = ("zebra", "bgpd", "staticd", "ospfd", "ospf6d", "bfdd")
_DEFAULT_DAEMONS = ("zebra", "bgpd", "staticd")


@dataclass(frozen=True, slots=True)
class Bind:
    """One ``source:target[:mode]`` bind, with the source made absolute."""

    source: Path
    target: str
    mode: str | None = None

    @classmethod
    def parse(cls, text: str, base_dir: Path) -> Bind:
        """Parse a containerlab bind string; relative sources are taken from ``base_dir``."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise TopologyError(f"bind {text!r} is not of the form source:target[:mode]")
        source = Path(parts[0]).expanduser()
        if not source.is_absolute():
            source = base_dir / source
        target = str(PurePosixPath(parts[1]))
        if not target.startswith("/"):
            raise TopologyError(f"bind {text!r}: target must be an absolute path")
        return cls(
            source=Path(_normalise(source)),
            target=target,
            mode=parts[2] if len(parts) == 3 else None,
        )


@dataclass(frozen=True, slots=True)
class Node:
    """A node after defaults and kinds were merged into it."""

    name: str
    kind: str
    image: str | None
    binds: tuple[Bind, ...]
    exec: tuple[str, ...]
    cmd: str | None
    env: Mapping[str, str]
    labels: Mapping[str, str]

    def host_path(self, container_path: str) -> Path | None:
        """Where a path inside the node lives on the host, if a bind covers it."""
        path = str(PurePosixPath(container_path))
        for bind in sorted(self.binds, key=lambda b: len(b.target), reverse=True):
            if path == bind.target:
                return bind.source
            if path.startswith(bind.target.rstrip("/") + "/"):
                return bind.source / path[len(bind.target.rstrip("/")) + 1 :]
        return None

    def rewrite_argv(self, argv: list[str]) -> list[str]:
        """Apply the bind path rewrite (module docstring) to each argument."""
        return [self._rewrite_arg(arg) for arg in argv]

    def _rewrite_arg(self, arg: str) -> str:
        key, sep, value = arg.rpartition("=")
        if sep and value.startswith("/"):
            host = self.host_path(value)
            return f"{key}={host}" if host is not None else arg
        if arg.startswith("/"):
            host = self.host_path(arg)
            return str(host) if host is not None else arg
        return arg

    def exec_argvs(self) -> list[list[str]]:
        """The ``exec`` commands split like a shell would, with bind paths rewritten."""
        return [self.rewrite_argv(_split(self.name, "exec", cmd)) for cmd in self.exec]

    def cmd_argv(self) -> list[str] | None:
        """The ``cmd`` split like a shell would, with bind paths rewritten."""
        if self.cmd is None:
            return None
        return self.rewrite_argv(_split(self.name, "cmd", self.cmd))

    @property
    def frr_config(self) -> Path | None:
        """Host path of the node's ``frr.conf``; a node that binds one is an FRR router."""
        return self.host_path(FRR_CONFIG_PATH)

    @property
    def frr_daemons_file(self) -> Path | None:
        """Host path of the node's FRR ``daemons`` file, if it binds one."""
        return self.host_path(FRR_DAEMONS_PATH)

    @property
    def is_router(self) -> bool:
        """True when the node runs FRR."""
        return self.frr_config is not None


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """One end of a link: a node and its interface name."""

    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True, slots=True)
class Link:
    """A point-to-point veth link between two endpoints."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True, slots=True)
class Topology:
    """A parsed containerlab topology: its name, merged nodes and links."""

    name: str
    path: Path
    nodes: Mapping[str, Node]
    links: tuple[Link, ...]

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """Read and parse a ``.clab.yml`` file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise TopologyError(f"cannot read topology {file}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise TopologyError(f"topology {file} is not valid YAML: {detail}") from None
        return cls.parse(data, path=Path(_normalise(file.absolute())))

    @classmethod
    def parse(cls, data: Any, path: Path) -> Topology:
        """Build a topology from already-loaded YAML data; ``path`` anchors relative binds."""
        where = str(path)
        doc = _mapping(data, where)
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise TopologyError(
                f"{where}: 'name' must be a string of letters, digits, '-', "
                f"'_' or '.', got {name!r}"
            )
        topo = _mapping(doc.get("topology"), f"{where}: topology")
        defaults = _mapping(topo.get("defaults", {}), f"{where}: topology.defaults")
        kinds = _mapping(topo.get("kinds", {}), f"{where}: topology.kinds")
        raw_nodes = _mapping(topo.get("nodes"), f"{where}: topology.nodes")
        if not raw_nodes:
            raise TopologyError(f"{where}: topology.nodes is empty")
        base_dir = path.parent
        nodes: dict[str, Node] = {}
        for node_name, raw in raw_nodes.items():
            if not isinstance(node_name, str) or not _NAME_RE.match(node_name):
                raise TopologyError(f"{where}: bad node name {node_name!r}")
            node_cfg = _mapping(raw if raw is not None else {}, f"{where}: node {node_name}")
            nodes[node_name] = _merge_node(node_name, node_cfg, defaults, kinds, base_dir, where)
        links = _parse_links(topo.get("links", []) or [], nodes, where)
        return cls(name=name, path=path, nodes=MappingProxyType(nodes), links=links)

    @property
    def routers(self) -> tuple[Node, ...]:
        """The nodes that run FRR, in topology order."""
        return tuple(node for node in self.nodes.values() if node.is_router)


def parse_daemons(text: str) -> tuple[str, ...]:
    """Which FRR daemons an FRR ``daemons`` file enables, zebra first and always."""
    enabled = ["zebra"]
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        if key in FRR_DAEMONS and key != "zebra" and value.strip().strip("\"'") == "yes":
            enabled.append(key)
    return tuple(enabled)


def default_daemons() -> tuple[str, ...]:
    """Daemons started when an FRR node binds no ``daemons`` file."""
    return _DEFAULT_DAEMONS


def _merge_node(
    name: str,
    node: Mapping[str, Any],
    defaults: Mapping[str, Any],
    kinds: Mapping[str, Any],
    base_dir: Path,
    where: str,
) -> Node:
    ctx = f"{where}: node {name}"
    kind = node.get("kind") or defaults.get("kind")
    if not isinstance(kind, str):
        raise TopologyError(f"{ctx}: no kind (set it on the node or in topology.defaults)")
    if kind not in SUPPORTED_KINDS:
        raise TopologyError(
            f"{ctx}: kind {kind!r} is not supported by anycast-netlab "
            f"(supported: {', '.join(sorted(SUPPORTED_KINDS))})"
        )
    kind_cfg = _mapping(kinds.get(kind, {}) or {}, f"{where}: topology.kinds.{kind}")
    layers = (defaults, kind_cfg, node)  # lowest precedence first

    def scalar(field: str) -> str | None:
        for layer in reversed(layers):
            value = layer.get(field)
            if value is not None and value != "":
                if not isinstance(value, str):
                    raise TopologyError(f"{ctx}: {field} must be a string")
                return value
        return None

    exec_cmds: tuple[str, ...] = ()
    for layer in reversed(layers):
        value = layer.get("exec")
        if value:
            exec_cmds = tuple(_str_list(value, f"{ctx}: exec"))
            break

    binds: dict[str, Bind] = {}
    for layer in layers:
        for text in _str_list(layer.get("binds") or [], f"{ctx}: binds"):
            bind = Bind.parse(text, base_dir)
            binds.pop(bind.target, None)  # re-insert so the order follows precedence
            binds[bind.target] = bind

    merged = Node(
        name=name,
        kind=kind,
        image=scalar("image"),
        binds=tuple(binds.values()),
        exec=exec_cmds,
        cmd=scalar("cmd"),
        env=MappingProxyType(_merged_dict(layers, "env", ctx)),
        labels=MappingProxyType(_merged_dict(layers, "labels", ctx)),
    )
    merged.exec_argvs()  # fail at load time, not halfway through a deploy
    merged.cmd_argv()
    return merged


def _parse_links(raw: Any, nodes: Mapping[str, Node], where: str) -> tuple[Link, ...]:
    if not isinstance(raw, list):
        raise TopologyError(f"{where}: topology.links must be a list")
    links: list[Link] = []
    seen: set[Endpoint] = set()
    for index, item in enumerate(raw):
        ctx = f"{where}: link {index + 1}"
        entry = _mapping(item, ctx)
        endpoints = entry.get("endpoints")
        if "type" in entry and entry["type"] != "veth":
            raise TopologyError(f"{ctx}: link type {entry['type']!r} is not supported")
        if not isinstance(endpoints, list) or len(endpoints) != 2:
            raise TopologyError(f"{ctx}: endpoints must be a list of two 'node:interface'")
        ends = tuple(_parse_endpoint(end, nodes, ctx) for end in endpoints)
        for end in ends:
            if end in seen:
                raise TopologyError(f"{ctx}: interface {end} is used by more than one link")
            seen.add(end)
        links.append(Link(a=ends[0], b=ends[1]))
    return tuple(links)


def _parse_endpoint(raw: Any, nodes: Mapping[str, Node], ctx: str) -> Endpoint:
    if isinstance(raw, Mapping):  # the extended form: {node: x, interface: y}
        node, interface = raw.get("node"), raw.get("interface")
    elif isinstance(raw, str) and raw.count(":") == 1:
        node, interface = raw.split(":")
    else:
        raise TopologyError(f"{ctx}: endpoint {raw!r} is not 'node:interface'")
    if not isinstance(node, str) or not isinstance(interface, str):
        raise TopologyError(f"{ctx}: endpoint {raw!r} is not 'node:interface'")
    if node not in nodes:
        raise TopologyError(f"{ctx}: endpoint {raw!r} names unknown node {node!r}")
    if len(interface) > MAX_IFNAME or not _IFNAME_RE.match(interface) or interface == "lo":
        raise TopologyError(
            f"{ctx}: interface name {interface!r} is not a valid Linux "
            f"interface name (at most {MAX_IFNAME} characters)"
        )
    return Endpoint(node=node, interface=interface)


def _mapping(value: Any, ctx: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TopologyError(f"{ctx}: expected a mapping, got {type(value).__name__}")
    return value


def _str_list(value: Any, ctx: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TopologyError(f"{ctx}: expected a list of strings")
    return list(value)


def _merged_dict(layers: tuple[Mapping[str, Any], ...], field: str, ctx: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for layer in layers:
        for key, value in _mapping(layer.get(field) or {}, f"{ctx}: {field}").items():
            # YAML turns `true`/`1` into bool/int; a container would see the text.
            merged[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return merged


def _split(node: str, field: str, command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise TopologyError(f"node {node}: cannot split {field} {command!r}: {exc}") from None
    if not argv:
        raise TopologyError(f"node {node}: empty {field} command")
    return argv


def _normalise(path: Path) -> str:
    # Collapse `a/../b` without resolving symlinks (a bind source may be a symlink on purpose).
    parts: list[str] = []
    for part in PurePosixPath(path).parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/" + "/".join(parts)
