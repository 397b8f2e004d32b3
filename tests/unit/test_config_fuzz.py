"""Fuzzing the loader.

The invariant: for any text, ``parse_config`` either returns a ``Config`` or raises
``ConfigError`` whose problems are non-empty one-line strings. Any other exception is a bug,
because it would reach the user as a traceback instead of a message naming the field.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anycast_announcer.config import Config, ConfigError, parse_config

BASE: dict[str, Any] = {
    "bgp": {
        "local_as": 65101,
        "router_id": "10.0.0.11",
        "peers": [{"address": "192.0.2.1", "peer_as": 65001}],
    },
    "services": [
        {"name": "web", "check": {"type": "http", "url": "http://127.0.0.1/", "body_regex": "ok"}},
        {"name": "dns", "check": {"type": "tcp", "host": "127.0.0.1", "port": 53}},
        {"name": "disk", "check": {"type": "command", "argv": ["true"], "env": {"A": "1"}}},
    ],
    "prefixes": [
        {
            "prefix": "198.51.100.10/32",
            "services": ["web", "dns"],
            "communities": ["65101:1"],
            "bandwidth_mbps": 1000,
            "weight_community": {"asn": 65101},
        }
    ],
    "allowed_prefixes": ["198.51.100.0/24"],
    "http": {"listen": "127.0.0.1:9179"},
    "exabgp": {"restart_backoff_initial": 1, "restart_backoff_max": 2},
}

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "::", "0.0.0.0/0", "1:2", "a:b:c", "(", "tcp", "http", "[::1]:1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def check_invariant(text: str) -> None:
    try:
        result = parse_config(text)
    except ConfigError as error:
        problems = error.problems
    else:
        assert isinstance(result, Config)
        return
    assert problems
    assert all(isinstance(p, str) and p and "\n" not in p for p in problems)


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict and list inside ``node``, the root included."""
    found = [path]
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in children:
        if isinstance(child, dict | list):
            found += _containers(child, (*path, key))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """The valid config with a few keys dropped, values replaced, or keys added."""
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_containers(data)))
        node: Any = data
        for key in path:
            node = node[key]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "add" or not keys:
            if isinstance(node, dict):
                node[draw(st.text(max_size=12))] = draw(values)
            else:
                node.append(draw(values))
            continue
        key = draw(st.sampled_from(keys))
        if action == "drop":
            del node[key]
        else:
            node[key] = draw(values)
    return data


def test_the_base_is_valid() -> None:
    """Mutations start from a config that passes, so their failures mean something."""
    assert isinstance(parse_config(yaml.safe_dump(BASE)), Config)


@FUZZ
@given(mutated())
def test_mutated_configs_parse_or_raise_config_error(data: dict[str, Any]) -> None:
    """Dropped keys, wrong types and extra keys anywhere are user mistakes, never crashes."""
    check_invariant(yaml.safe_dump(data))


@FUZZ
@given(values)
def test_random_structures_parse_or_raise_config_error(data: Any) -> None:
    """Any YAML document at all is handled."""
    check_invariant(yaml.safe_dump(data))


@FUZZ
@given(
    st.text(alphabet=st.sampled_from(list("abgp:{}[]-,&*!|>'\"#%@ \n\t0123456789./")), max_size=200)
)
def test_random_yamlish_text_parses_or_raises_config_error(text: str) -> None:
    """Arbitrary text made of YAML's punctuation never escapes as another exception."""
    check_invariant(text)


@FUZZ
@given(st.text(max_size=200))
def test_random_unicode_text_parses_or_raises_config_error(text: str) -> None:
    """Control characters, surrogates and the like are reported, not raised."""
    check_invariant(text)
