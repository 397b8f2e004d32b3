"""Every topology in containerlab/ is valid for containerlab itself, per its JSON Schema.

The schema is vendored beside this file (``clab_schema/``, containerlab v0.79.0, with its
licence and origin), so the repository is self-contained.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.lablib import REPO_ROOT

SCHEMA_DIR = Path(__file__).resolve().parent / "clab_schema"
SCHEMA_PATH = SCHEMA_DIR / "clab.schema.json"
SCHEMA_SHA256 = "51a7025041d90fcded90911d4947773794464ccd903f01c03d5b2ff988f58d02"
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
        pytest.fail(f"containerlab's vendored schema is missing: expected it at {SCHEMA_PATH}")
    schema = _pythonise(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert r"\p{" not in json.dumps(schema), "a Unicode class the test does not translate"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_vendored_schema_is_the_recorded_release() -> None:
    """The file is the one its README names, with its licence beside it."""
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "clab.schema.json changed: update clab_schema/README.md"
    assert SCHEMA_SHA256 in (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
    assert "Redistribution" in (SCHEMA_DIR / "LICENSE.containerlab").read_text(encoding="utf-8")


def test_nothing_in_the_repository_reaches_outside_it() -> None:
    """Tests once read a folder beside the repository; a clone elsewhere must work alone."""
    outside = ".." + "/shared"  # spelt in two pieces so this file does not match itself
    patterns = ("**/*.py", "**/*.md", "**/*.toml", "**/*.yml", "**/*.yaml", "**/*.sh")
    candidates = [path for pattern in patterns for path in REPO_ROOT.glob(pattern)]
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in [*candidates, REPO_ROOT / "Makefile"]
        if ".venv" not in path.parts
        and outside in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


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
    doc: dict[str, Any] = {"name": "x", "topology": {"nodes": {"a": {"kind": "linx"}}}}
    assert list(validator.iter_errors(doc))


def test_translated_pattern_still_means_letters_and_digits() -> None:
    """The replacement class accepts a zone like `%eth1` and rejects punctuation."""
    pattern = _pythonise_pattern(r"^x(%[\p{N}\p{L}]+)?$")
    assert re.search(pattern, "x%eth1")
    assert re.search(pattern, "x%ü2")
    assert not re.search(pattern, "x%eth-1")
