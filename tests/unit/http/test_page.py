"""The status page as text: what it shows, and that user data is escaped."""

from __future__ import annotations

from anycast_announcer.http.client import format_status
from anycast_announcer.http.page import render_page
from anycast_announcer.status import RescueGateStatus, RescueMembershipStatus, RescueMemberStatus
from tests.unit.http.fakes import EVIL_SERVICE, NOW, replace, sample_rescue, sample_status


class TestRenderPage:
    def test_shows_each_prefix_with_its_state_and_reason(self) -> None:
        """One badge per prefix, the withdrawn one with its reason."""
        page = render_page(sample_status(), now=NOW)
        assert 'data-state="announced"' in page
        assert 'data-state="withdrawn"' in page
        assert "service dns is down: timeout after 0.5s" in page
        assert "25 Gbit/s" in page

    def test_user_data_is_escaped(self) -> None:
        """Names and reasons cannot inject markup."""
        status = sample_status()
        prefix = replace(status.prefixes[1], reason='"><img src=x onerror=alert(1)>')
        page = render_page(replace(status, prefixes=(prefix,)), now=NOW)
        assert EVIL_SERVICE not in page
        assert "&lt;script&gt;" in page
        assert "<img" not in page
        assert "&quot;&gt;&lt;img src=x" in page

    def test_reload_error_and_drain_are_visible(self) -> None:
        """A failed reload and a drain in progress are spelled out."""
        status = sample_status()
        prefix = replace(
            status.prefixes[0],
            state="draining",
            drain_phase="waiting_connections",
            drain_reason="kernel upgrade",
            established_connections=17,
        )
        status = replace(
            status, prefixes=(prefix,), last_reload_error="bgp.local_as: required key is missing"
        )
        page = render_page(status, now=NOW)
        assert "last reload failed: bgp.local_as: required key is missing" in page
        assert "drain: waiting_connections (kernel upgrade), 17 connections left" in page

    def test_empty_sidecar(self) -> None:
        """No prefixes, services or peers still renders a page."""
        status = replace(sample_status(), prefixes=(), services=(), peers=())
        assert "no prefixes configured" in render_page(status, now=NOW)


def test_flow_rescue_is_shown_with_its_counters() -> None:
    page = render_page(replace(sample_status(), rescue=sample_rescue()), now=NOW)
    assert 'id="rescue"' in page
    assert 'data-rescue-peer="10.0.2.2"' in page
    assert "4521 / 6329400" in page  # rescued from 10.0.2.2: packets / bytes
    assert "7 ICMP errors relayed, 1 orphan packets reset" in page
    assert 'id="rescue"' not in render_page(sample_status(), now=NOW)


def test_learnt_membership_is_shown_in_the_rescue_section() -> None:
    """Member routes are not prefixes: the learnt members show under flow rescue."""
    membership = RescueMembershipStatus(
        community="65000:4242",
        announced=True,
        members=(
            RescueMemberStatus(address="10.0.2.2", present=True, held_for=None),
            RescueMemberStatus(address="10.0.3.2", present=False, held_for=812.4),
        ),
        ignored={"no_community": 2},
        gate=RescueGateStatus(
            state="waiting_for_data_path", since=NOW - 3, opened_by=None, opens_in=6.6
        ),
    )
    rescue = sample_rescue().model_copy(update={"membership": membership})
    status = replace(sample_status(), rescue=rescue)
    page = render_page(status, now=NOW)
    assert "10.0.2.2, 10.0.3.2 (held down 812 s); member route announced" in page
    text = format_status(status, now=NOW)
    assert "rescue members learnt (65000:4242, member route announced): 10.0.2.2, " in text
    assert "10.0.3.2 (held down 812s); 2 routes ignored" in text
    assert "start-up gate: waiting_for_data_path since <time" in page
    assert "3 s ago</time>, opens anyway in 7 s</p>" in page
    assert "rescue start-up gate: waiting_for_data_path since 3s ago, opens anyway in 7s" in text
