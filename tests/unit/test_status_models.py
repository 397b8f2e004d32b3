"""The status models are the wire format of /status: every field, stable names, strict JSON."""

from __future__ import annotations

import json
import math

from anycast_announcer.status import (
    ExabgpStatus,
    PeerStatus,
    PrefixStatus,
    ProbeStatus,
    ServiceStatus,
    SidecarStatus,
    iso_time,
)
from tests.unit.http.fakes import replace, sample_status


class TestWireFormat:
    def test_every_model_field_is_on_the_wire(self) -> None:
        """A field added to a status model shows up in /status (the models are the list)."""
        data = json.loads(sample_status().model_dump_json())
        assert set(SidecarStatus.model_fields) <= set(data)
        assert set(ServiceStatus.model_fields) <= set(data["services"][0])
        assert set(ProbeStatus.model_fields) <= set(data["services"][0]["last_results"][0])
        assert set(PrefixStatus.model_fields) <= set(data["prefixes"][0])
        assert set(PeerStatus.model_fields) <= set(data["peers"][0])
        assert set(ExabgpStatus.model_fields) == set(data["exabgp"])

    def test_times_have_iso_siblings(self) -> None:
        """Each Unix time comes with its ISO 8601 UTC form; None stays None."""
        data = json.loads(sample_status().model_dump_json())
        assert data["started_at"] == 1_790_000_000.0 - 3725
        assert data["started_at_iso"] == "2026-09-21T13:11:15.000Z"
        assert data["services"][2]["last_change_at"] is None
        assert data["services"][2]["last_change_at_iso"] is None
        assert data["services"][0]["last_results"][0]["at_iso"] == "2026-09-21T14:13:19.000Z"

    def test_output_is_strict_json(self) -> None:
        """NaN and infinities become null, so strict JSON readers can parse every answer."""
        status = sample_status()
        prefix = replace(status.prefixes[0], bandwidth_mbps=math.nan, dampening_penalty=math.inf)
        text = replace(status, prefixes=(prefix,)).model_dump_json()
        again = json.loads(text, parse_constant=lambda name: 1 / 0)["prefixes"][0]
        assert again["bandwidth_mbps"] is None
        assert again["dampening_penalty"] is None

    def test_route_attributes_are_typed_lists(self) -> None:
        """Communities held as tuples arrive as JSON arrays, per peer."""
        data = json.loads(sample_status().model_dump_json())
        route = data["prefixes"][0]["routes"]["10.0.1.1"]
        assert route["communities"] == ["65001:100"]
        assert route["bandwidth_bps"] == 3.125e9

    def test_the_wire_format_reads_back_into_the_same_models(self) -> None:
        """What the CLI reads is what the sidecar wrote (the computed ISO fields aside)."""
        status = sample_status()
        assert SidecarStatus.model_validate_json(status.model_dump_json()) == status

    def test_a_newer_sidecar_with_more_fields_still_reads(self) -> None:
        """Fields are only ever added; an older CLI ignores the ones it does not know."""
        data = json.loads(sample_status().model_dump_json())
        data["a_field_from_the_future"] = 1
        data["prefixes"][0]["another"] = {"x": 1}
        assert SidecarStatus.model_validate(data).prefixes[0].prefix == "10.255.0.1/32"


def test_iso_time_edge_cases() -> None:
    """Out-of-range and non-finite times have no ISO form rather than raising."""
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(None) is None
    assert iso_time(math.nan) is None
    assert iso_time(1e20) is None


def test_the_cli_tables_show_flow_rescue() -> None:
    """The human view lists each rescue peer, and a failure to install."""
    from anycast_announcer.http.client import format_status
    from tests.unit.http.fakes import NOW, sample_rescue

    rescue = replace(sample_rescue(), installed=False, last_error="nft: Operation not permitted")
    text = format_status(replace(sample_status(), rescue=rescue), now=NOW)
    assert "rescue: NOT INSTALLED (member 10.0.1.2)" in text
    assert "rescue failed: nft: Operation not permitted" in text
    assert "10.0.2.2     120 pkts / 168000 B" in text
    assert "rescue" not in format_status(sample_status(), now=NOW)
