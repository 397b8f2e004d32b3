"""Every topology in containerlab/ is valid for containerlab itself, per its JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.lablib import REPO_ROOT

SCHEMA_PATH = REPO_ROOT.parent / "shared" / "containerlab" / "clab.schema.json"
TOPOLOGIES = sorted((REPO_ROOT / "containerlab").glob("**/*.clab.yml"))

# The schema's patterns use ECMAScript Unicode classes that Python's `re` rejects.
# They only appear as `[\p{N}\p{L}]` (a zone suffix on addresses); `[^\W_]` is
# Python's "Unicode letter or digit", the same set.
_UNICODE_CLASSES = {r"[\p{N}\p{L}]": r"[^\W_]"}


def _pythonise(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key if not isinstance(key, str) else _pythonise_pattern(key): _pythonise(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_pythonise(item) for item in node]
    if isinstance(node, str):
        return _pythonise_pattern(node)
    return node


def _pythonise_pattern(text: str) -> str:
    for ecma, python in _UNICODE_CLASSES.items():
        text = text.replace(ecma, python)
    return text


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    if not SCHEMA_PATH.is_file():
        pytest.fail(
            f"containerlab's schema is missing: expected it at {SCHEMA_PATH} "
            "(../shared/containerlab/clab.schema.json from the repository root)"
        )
    schema = _pythonise(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert r"\p{" not in json.dumps(schema), "a Unicode class the test does not translate"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_there_are_topologies_to_check() -> None:
    """The glob finds the shipped labs, so the parametrised test below is not vacuous."""
    assert REPO_ROOT / "containerlab" / "single-leaf" / "single-leaf.clab.yml" in TOPOLOGIES


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_topology_matches_containerlab_schema(
    path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """containerlab would accept the file (same schema containerlab's editor support uses)."""
    errors = sorted(
        validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_schema_catches_a_misspelt_kind(validator: jsonschema.protocols.Validator) -> None:
    """The check can fail: an unknown kind is rejected."""
    doc = {"name": "x", "topology": {"nodes": {"a": {"kind": "linx"}}}}
    assert list(validator.iter_errors(doc))


def test_translated_pattern_still_means_letters_and_digits() -> None:
    """The replacement class accepts a zone like `%eth1` and rejects punctuation."""
    pattern = _pythonise_pattern(r"^x(%[\p{N}\p{L}]+)?$")
    assert re.search(pattern, "x%eth1")
    assert re.search(pattern, "x%ü2")
    assert not re.search(pattern, "x%eth-1")
