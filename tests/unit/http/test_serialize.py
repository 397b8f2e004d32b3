"""The JSON form of a status snapshot: every field, stable names, valid JSON."""

from __future__ import annotations

import dataclasses
import json
import math

from anycast_announcer.http.serialize import iso_time, status_to_json
from anycast_announcer.status import (
    ExabgpStatus,
    PeerStatus,
    PrefixStatus,
    ProbeStatus,
    ServiceStatus,
    SidecarStatus,
)
from tests.unit.http.fakes import sample_status


def _keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


class TestStatusToJson:
    def test_every_dataclass_field_is_serialized(self) -> None:
        """A field added to a status dataclass must show up in /status (else this fails)."""
        data = status_to_json(sample_status())
        assert _keys(SidecarStatus) <= set(data)
        assert _keys(ServiceStatus) <= set(data["services"][0])
        assert _keys(ProbeStatus) <= set(data["services"][0]["last_results"][0])
        assert _keys(PrefixStatus) <= set(data["prefixes"][0])
        assert _keys(PeerStatus) <= set(data["peers"][0])
        assert _keys(ExabgpStatus) == set(data["exabgp"])

    def test_times_have_iso_siblings(self) -> None:
        """Each Unix time comes with its ISO 8601 UTC form; None stays None."""
        data = status_to_json(sample_status())
        assert data["started_at"] == 1_790_000_000.0 - 3725
        assert data["started_at_iso"] == "2026-09-21T13:11:15.000Z"
        assert data["services"][2]["last_change_at"] is None
        assert data["services"][2]["last_change_at_iso"] is None
        assert data["services"][0]["last_results"][0]["at_iso"] == "2026-09-21T14:13:19.000Z"

    def test_output_is_strict_json(self) -> None:
        """NaN and infinities become null; tuples become lists; route attributes survive."""
        status = sample_status()
        prefix = dataclasses.replace(
            status.prefixes[0],
            bandwidth_mbps=math.nan,
            dampening_penalty=math.inf,
            routes={"10.0.1.1": {"med": 100, "weird": object(), "set": {2, 1}, "f": math.nan}},
        )
        data = status_to_json(dataclasses.replace(status, prefixes=(prefix,)))
        text = json.dumps(data, allow_nan=False)  # raises on NaN
        again = json.loads(text)["prefixes"][0]
        assert again["bandwidth_mbps"] is None
        assert again["dampening_penalty"] is None
        assert again["routes"]["10.0.1.1"]["med"] == 100
        assert again["routes"]["10.0.1.1"]["set"] == [1, 2]
        assert again["routes"]["10.0.1.1"]["f"] is None
        assert again["routes"]["10.0.1.1"]["weird"].startswith("<object")

    def test_route_tuples_become_lists(self) -> None:
        """Communities held as tuples arrive as JSON arrays."""
        data = status_to_json(sample_status())
        assert data["prefixes"][0]["routes"]["10.0.1.1"]["communities"] == ["65001:100"]


def test_iso_time_edge_cases() -> None:
    """Out-of-range and non-finite times have no ISO form rather than raising."""
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(None) is None
    assert iso_time(math.nan) is None
    assert iso_time(1e20) is None
