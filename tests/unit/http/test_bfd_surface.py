"""BFD on the operator surface: the page's and the CLI's peer tables."""

from __future__ import annotations

from anycast_announcer.http.client import format_status
from anycast_announcer.http.page import render_page
from anycast_announcer.status import BfdStatus, SidecarStatus
from tests.unit.http.fakes import NOW, replace, sample_status

BFD_DOWN = BfdStatus(
    state="down",
    remote_state="down",
    local_discriminator=7,
    remote_discriminator=0,
    local_diag="control_detection_time_expired",
    remote_diag="none",
    transmit_interval=1.0,
    detection_time=0.9,
    remote_min_rx=0.3,
    remote_min_tx=0.3,
    remote_multiplier=3,
    polling=False,
    state_changes=3,
    last_change_at=NOW - 5,
    packets_sent=100,
    packets_received=90,
    packets_discarded=0,
)
BFD_UP = replace(
    BFD_DOWN,
    state="up",
    remote_state="up",
    remote_discriminator=4242,
    local_diag="none",
    transmit_interval=0.3,
    state_changes=4,
)


def with_bfd(first: BfdStatus | None, second: BfdStatus | None) -> SidecarStatus:
    status = sample_status()
    peers = (replace(status.peers[0], bfd=first), replace(status.peers[1], bfd=second))
    return replace(status, peers=peers)


class TestPage:
    def test_shows_state_discriminator_intervals_and_changes(self) -> None:
        page = render_page(with_bfd(BFD_UP, None), now=NOW)
        row = next(line for line in page.splitlines() if 'data-peer="10.0.1.1"' in line)
        assert 'data-state="up"' in row.split("<td>")[-1]
        assert "remote discriminator 4242" in row
        assert "every 300 ms, detection 900 ms" in row
        assert "4 changes" in row
        other = next(line for line in page.splitlines() if 'data-peer="fd00:1::1"' in line)
        assert other.endswith("<td>off</td></tr>")

    def test_a_down_session_says_why(self) -> None:
        page = render_page(with_bfd(BFD_DOWN, None), now=NOW)
        row = next(line for line in page.splitlines() if 'data-peer="10.0.1.1"' in line)
        assert "control_detection_time_expired" in row


class TestCli:
    def test_the_peer_table_has_a_bfd_column(self) -> None:
        text = format_status(with_bfd(BFD_UP, BFD_DOWN), now=NOW)
        header = next(line for line in text.splitlines() if line.startswith("PEER"))
        assert header.rstrip().endswith("BFD")
        rows = {
            line.split()[0]: line
            for line in text.splitlines()
            if line.startswith(("10.0.1.1", "fd00:1::1"))
        }
        assert "up 0.3s/0.9s remote 4242, 4 changes" in rows["10.0.1.1"]
        assert "down 1s/0.9s (control_detection_time_expired)" in rows["fd00:1::1"]

    def test_peers_without_bfd_say_off(self) -> None:
        text = format_status(with_bfd(None, None), now=NOW)
        rows = [line for line in text.splitlines() if line.startswith(("10.0.1.1", "fd00"))]
        assert rows
        assert all(line.rstrip().endswith("off") for line in rows)
