"""The OpenAPI document is valid, covers every route, and matches what the app answers."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from anycast_announcer.http.openapi import openapi_document
from tests.unit.http.fakes import TOKEN, FakeControl, client_for, make_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app_operations() -> set[tuple[str, str]]:
    app = make_app()
    operations = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert path is not None, f"route {route!r} has no path"
        operations.add((route.method.lower(), path))
    return operations


def _documented_operations() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    }


def test_document_is_valid_openapi() -> None:
    """openapi-spec-validator accepts the document (OpenAPI 3.1)."""
    validate(openapi_document())


def test_every_route_is_documented_and_every_operation_exists() -> None:
    """A new endpoint without docs, or docs for a removed endpoint, fail here."""
    assert _app_operations() == _documented_operations()


def test_every_operation_documents_its_errors() -> None:
    """Mutating operations list their auth errors; those with bodies, their body errors."""
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "200" in codes, (method, path)
            if method == "post":
                assert {"401", "403", "409"} <= codes, (method, path)
                if "requestBody" in operation:
                    assert {"400", "413", "415", "422"} <= codes, (method, path)


def _validator(schema: dict[str, Any]) -> OAS31Validator:
    document = openapi_document()
    return OAS31Validator({**schema, "components": document["components"]})


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/healthz", {}, 200),
        ("get", "/readyz", {}, 200),
        ("get", "/status", {}, 200),
        ("post", "/drain", {"json": {"prefixes": ["10.255.0.1/32"]}, "headers": AUTH}, 200),
        ("post", "/drain", {"json": {"prefixes": ["10.1.1.1/32"]}, "headers": AUTH}, 409),
        ("post", "/drain", {"json": {"prefixes": 1}, "headers": AUTH}, 422),
        (
            "post",
            "/drain",
            {"data": "{", "headers": {**AUTH, "Content-Type": "application/json"}},
            400,
        ),
        ("post", "/undrain", {}, 401),
        ("post", "/reload", {"headers": AUTH}, 200),
    ],
)
async def test_answers_match_the_document(
    method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    """Each answer's status is documented for its operation and its body fits the schema."""
    async with client_for(make_app(FakeControl())) as client:
        response = await client.request(method, path, **kwargs)
        assert response.status == status
        body = await response.json()
    documented = openapi_document()["paths"][path][method]["responses"][str(status)]
    schema = documented["content"]["application/json"]["schema"]
    _validator(schema).validate(body)
