"""Every endpoint of the status API, and every way a request can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anycast_announcer.metrics import Metrics
from anycast_announcer.status import ControlResult
from tests.unit.http.fakes import TOKEN, FakeControl, client_for, make_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}


def _is_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"] != ""


class TestReadEndpoints:
    async def test_healthz_ok_while_exabgp_runs(self) -> None:
        """/healthz is 200 {"status": "ok"} while the loop answers and ExaBGP runs."""
        async with client_for(make_app()) as client:
            response = await client.get("/healthz")
            assert response.status == 200
            assert await response.json() == {"status": "ok"}

    async def test_healthz_503_when_exabgp_is_down(self) -> None:
        """A dead ExaBGP makes the sidecar unhealthy: it cannot announce anything."""
        control = FakeControl()
        control.with_exabgp_down()
        async with client_for(make_app(control)) as client:
            response = await client.get("/healthz")
            assert response.status == 503
            body = await response.json()
            assert body["status"] == "unhealthy"
            assert "exabgp" in body["error"]

    @pytest.mark.parametrize(("ready", "status"), [(True, 200), (False, 503)])
    async def test_readyz_follows_control_ready(self, ready: bool, status: int) -> None:
        """/readyz answers what Control.ready() says."""
        async with client_for(make_app(FakeControl(is_ready=ready))) as client:
            response = await client.get("/readyz")
            assert response.status == status
            assert (await response.json())["status"] == ("ready" if ready else "not_ready")

    async def test_status_is_the_snapshot_as_json(self) -> None:
        """/status carries the prefixes, services, peers and ExaBGP of the snapshot."""
        async with client_for(make_app()) as client:
            response = await client.get("/status")
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.json()
        assert [p["prefix"] for p in body["prefixes"]] == ["10.255.0.1/32", "10.255.0.53/32"]
        withdrawn = body["prefixes"][1]
        assert withdrawn["state"] == "withdrawn"
        assert withdrawn["reason"] == "service dns is down: timeout after 0.5s"
        assert body["services"][1]["last_results"][-1]["reason"] == "timeout after 0.5s"
        assert body["peers"][1] == {
            "address": "fd00:1::1",
            "peer_as": 65100,
            "state": "down",
            "last_change_at": 1_790_000_000.0 - 10,
            "last_change_at_iso": "2026-09-21T14:13:10.000Z",
            "last_change_reason": "hold timer expired",
            "bfd": None,
        }
        assert body["exabgp"]["pid"] == 4242

    async def test_metrics_in_prometheus_text_format(self) -> None:
        """/metrics renders the Metrics object the app was built with."""
        metrics = Metrics()
        metrics.prefix_changed("10.255.0.1/32", announced=True)
        async with client_for(make_app(metrics=metrics)) as client:
            response = await client.get("/metrics")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        assert 'anycast_prefix_announced{prefix="10.255.0.1/32"} 1.0' in text

    async def test_page_is_html_with_a_strict_csp(self) -> None:
        """The page is HTML and forbids scripts even if escaping ever failed."""
        async with client_for(make_app()) as client:
            response = await client.get("/")
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "script-src" not in response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            page = await response.text()
        assert "<script>" not in page
        assert "&lt;script&gt;" in page

    async def test_openapi_json_is_served(self) -> None:
        """/openapi.json is the document, as JSON."""
        async with client_for(make_app()) as client:
            response = await client.get("/openapi.json")
            assert response.status == 200
            assert (await response.json())["openapi"].startswith("3.1")


class TestAuthentication:
    @pytest.mark.parametrize("path", ["/drain", "/undrain", "/reload"])
    async def test_missing_token_is_401_with_challenge(self, path: str) -> None:
        """Without Authorization the mutating endpoints answer 401 and WWW-Authenticate."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post(path)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert _is_error(await response.json())
        assert control.calls == []

    @pytest.mark.parametrize(
        "header",
        [f"Bearer {TOKEN}x", "Bearer wrong", f"Basic {TOKEN}", "Bearer", "Bearer ünïcödé", TOKEN],
    )
    async def test_wrong_token_is_401(self, header: str) -> None:
        """Any other credential is refused, non-ASCII included, and nothing is drained."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post("/drain", headers={"Authorization": header})
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert control.calls == []

    async def test_scheme_is_case_insensitive(self) -> None:
        """RFC 7235: the auth scheme name is case-insensitive."""
        async with client_for(make_app()) as client:
            response = await client.post("/reload", headers={"Authorization": f"bearer {TOKEN}"})
            assert response.status == 200

    @pytest.mark.parametrize("path", ["/drain", "/undrain", "/reload"])
    async def test_no_token_configured_is_403(self, path: str) -> None:
        """Without http.token_file the mutating endpoints are off, and say how to turn on."""
        async with client_for(make_app(token=None)) as client:
            response = await client.post(path, headers=AUTH)
            assert response.status == 403
            assert await response.json() == {"error": "no token configured (http.token_file)"}

    async def test_reads_need_no_token(self) -> None:
        """Status, page, metrics and probes are open (bind to loopback to restrict)."""
        async with client_for(make_app()) as client:
            for path in ["/", "/status", "/metrics", "/healthz", "/readyz", "/openapi.json"]:
                assert (await client.get(path)).status == 200, path


class TestDrain:
    async def test_drain_everything_without_body(self) -> None:
        """No body means every prefix, with the default reason."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post("/drain", headers=AUTH)
            assert response.status == 200
            assert await response.json() == {
                "ok": True,
                "message": "draining",
                "prefixes": ["10.255.0.1/32", "10.255.0.53/32"],
            }
        assert control.calls == [("drain", None, "drained via the API")]

    async def test_drain_some_with_reason(self) -> None:
        """Prefixes and reason are passed through, normalized and de-duplicated."""
        control = FakeControl()
        body = {"prefixes": ["10.255.0.1/32", "10.255.0.1/32"], "reason": "maintenance"}
        async with client_for(make_app(control)) as client:
            response = await client.post("/drain", json=body, headers=AUTH)
            assert response.status == 200
        assert control.calls == [("drain", ["10.255.0.1/32"], "maintenance")]

    async def test_ipv6_prefix_is_normalized(self) -> None:
        """fd00:255:0::1/128 and fd00:255::1/128 are the same prefix."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            await client.post("/undrain", json={"prefixes": ["FD00:255:0::1/128"]}, headers=AUTH)
        assert control.calls == [("undrain", ["fd00:255::1/128"])]

    async def test_refused_request_is_409_with_the_message(self) -> None:
        """ControlResult.ok False (an unknown prefix) becomes 409 with Control's message."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post("/drain", json={"prefixes": ["10.9.9.9/32"]}, headers=AUTH)
            assert response.status == 409
            assert await response.json() == {
                "error": "unknown prefix 10.9.9.9/32",
                "prefixes": ["10.9.9.9/32"],
            }

    async def test_undrain_all(self) -> None:
        """An empty JSON object is the same as no body."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post("/undrain", json={}, headers=AUTH)
            assert response.status == 200
        assert control.calls == [("undrain", None)]

    async def test_reload_ok_and_refused(self) -> None:
        """Reload answers 200, or 409 with the config error when the file is invalid."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            assert (await client.post("/reload", headers=AUTH)).status == 200
            control.reload_result = ControlResult(ok=False, message="config.yaml: bgp: missing")
            response = await client.post("/reload", headers=AUTH)
            assert response.status == 409
            assert (await response.json())["error"] == "config.yaml: bgp: missing"


class TestBadRequests:
    @pytest.mark.parametrize(
        ("body", "needle"),
        [
            (b"{", "invalid JSON: Expecting property name"),
            (b'{"reason": "x",}', "invalid JSON"),
            (b"NaN", "NaN is not valid JSON"),
            (b'{"reason": "a", "reason": "b"}', "duplicate key 'reason'"),
            (b"\xff\xfe", "not UTF-8"),
            (b"[" * 100_000, "invalid JSON"),
            (b"\t", "invalid JSON: Expecting value"),
        ],
    )
    async def test_malformed_body_is_400(self, body: bytes, needle: str) -> None:
        """A body that is not JSON is 400 and the message names the problem."""
        control = FakeControl()
        async with client_for(make_app(control, max_body=1 << 20)) as client:
            response = await client.post("/drain", data=body, headers=JSON_AUTH)
            assert response.status == 400
            assert needle in (await response.json())["error"]
        assert control.calls == []

    @pytest.mark.parametrize(
        ("path", "body", "needle"),
        [
            ("/drain", [], "the body must be a JSON object, not a list"),
            ("/drain", "x", "not a string"),
            ("/drain", {"prefix": ["10.255.0.1/32"]}, "unknown field 'prefix'"),
            ("/undrain", {"reason": "x"}, "unknown field 'reason' (allowed: prefixes)"),
            ("/reload", {"force": True}, "unknown field 'force'"),
            ("/drain", {"prefixes": "10.255.0.1/32"}, "prefixes: must be a list"),
            ("/drain", {"prefixes": None}, "prefixes: must be a list of prefixes, not null"),
            ("/drain", {"prefixes": []}, "prefixes: must not be empty"),
            ("/drain", {"prefixes": [1]}, "prefixes[0]: must be a string, not a number"),
            ("/drain", {"prefixes": ["10.255.0.1/32", "web"]}, "prefixes[1]: 'web' is not"),
            ("/drain", {"prefixes": ["10.255.0.1"]}, "prefixes[0]: '10.255.0.1' is not"),
            ("/drain", {"prefixes": ["10.255.0.1/33"]}, "prefixes[0]"),
            ("/drain", {"prefixes": ["10.255.0.0/255.0.0.0"]}, "prefixes[0]"),
            ("/drain", {"prefixes": ["10.255.0.1/24"]}, "did you mean 10.255.0.0/24?"),
            ("/drain", {"reason": 5}, "reason: must be a string, not a number"),
            ("/drain", {"reason": ""}, "reason: must not be empty"),
            ("/drain", {"reason": "a\nb"}, "reason: must be one line"),
            ("/drain", {"reason": "a\n"}, "reason: must be one line"),
            ("/drain", {"reason": "next\u0085line"}, "reason: must be one line"),
            ("/drain", {"reason": "para\u2028graph"}, "reason: must be one line"),
            ("/drain", {"reason": "\u202eevil"}, "reason: must be one line"),
            ("/drain", {"reason": "x" * 257}, "reason: at most 256 characters"),
        ],
    )
    async def test_wrong_field_is_422_naming_it(self, path: str, body: object, needle: str) -> None:
        """Valid JSON with a wrong field is 422, and the message names the field."""
        control = FakeControl()
        async with client_for(make_app(control)) as client:
            response = await client.post(path, data=json.dumps(body), headers=JSON_AUTH)
            assert response.status == 422
            assert needle in (await response.json())["error"]
        assert control.calls == []

    async def test_non_json_content_type_is_415(self) -> None:
        """A form post (curl -d without -H) is refused with a hint."""
        async with client_for(make_app()) as client:
            response = await client.post(
                "/drain",
                data='{"reason": "x"}',
                headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status == 415
            assert "Content-Type: application/json" in (await response.json())["error"]

    async def test_oversized_body_is_413(self) -> None:
        """Bodies above max_body are refused before they are parsed."""
        control = FakeControl()
        async with client_for(make_app(control, max_body=1024)) as client:
            body = json.dumps({"reason": "x" * 2000})
            response = await client.post("/drain", data=body, headers=JSON_AUTH)
            assert response.status == 413
            assert "1024 bytes" in (await response.json())["error"]
        assert control.calls == []

    async def test_oversized_body_is_checked_after_auth(self) -> None:
        """Without a token nobody learns anything about body handling."""
        async with client_for(make_app(max_body=1024)) as client:
            response = await client.post("/drain", data="x" * 5000)
            assert response.status == 401

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("GET", "/drain", "POST"),
            ("POST", "/status", "GET"),
            ("DELETE", "/", "GET"),
            ("HEAD", "/status", "GET"),
            ("PUT", "/reload", "POST"),
        ],
    )
    async def test_wrong_method_is_405_with_allow(
        self, method: str, path: str, allowed: str
    ) -> None:
        """A known path with the wrong method is 405 and says what is allowed."""
        async with client_for(make_app()) as client:
            response = await client.request(method, path, headers=AUTH)
            assert response.status == 405
            assert response.headers["Allow"] == allowed
            if method != "HEAD":
                assert f"method {method} not allowed" in (await response.json())["error"]

    @pytest.mark.parametrize("path", ["/nope", "/status/", "/drain/x", "/%3Cscript%3E"])
    async def test_unknown_path_is_404_json(self, path: str) -> None:
        """Unknown paths are 404 with a JSON error, never aiohttp's text page."""
        async with client_for(make_app()) as client:
            response = await client.get(path)
            assert response.status == 404
            assert response.content_type == "application/json"
            assert "no such endpoint" in (await response.json())["error"]

    async def test_a_failing_control_is_500_without_traceback(self) -> None:
        """A bug behind the seam is logged; the client sees only 'internal error'."""

        class Broken(FakeControl):
            async def reload(self) -> ControlResult:
                raise RuntimeError("secret internals")

        async with client_for(make_app(Broken())) as client:
            response = await client.post("/reload", headers=AUTH)
            assert response.status == 500
            text = await response.text()
        assert "secret internals" not in text
        assert "Traceback" not in text
        assert json.loads(text) == {"error": "internal error; see the sidecar's log"}


def test_max_body_must_be_positive() -> None:
    """A zero limit would refuse every body: a programming error, caught at once."""
    with pytest.raises(ValueError, match="max_body"):
        make_app(max_body=0)
