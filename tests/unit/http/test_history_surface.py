"""The history on the operator surface: ``GET /history``, the page's section, the CLI."""

from __future__ import annotations

import asyncio
import re

import pytest

from anycast_announcer.cli import EXIT_FAILURE, EXIT_OK, main
from anycast_announcer.core import effects as fx
from anycast_announcer.history import CHANGES_KEPT, History
from anycast_announcer.historymodels import SidecarHistory
from anycast_announcer.http import start_http
from anycast_announcer.http.history_text import COLUMNS, format_history
from anycast_announcer.http.page import render_page
from anycast_announcer.status import PrefixState
from tests.unit.http.fakes import (
    EVIL_SERVICE,
    FLAP,
    NOW,
    FakeControl,
    client_for,
    make_app,
    sample_recorder,
    sample_status,
)

_BAND = re.compile(r'<rect class="band (\w+)"[^>]*data-state="(\w+)"')


def _row(page: str, attribute: str, name: str) -> str:
    start = page.index(f'{attribute}="{name}"')
    return page[start : page.index("</tr>", start)]


class TestApi:
    async def test_history_is_served_as_its_model(self) -> None:
        """The last hour by default: the flap of the dns prefix, with its reasons."""
        async with client_for(make_app()) as client:
            response = await client.get("/history")
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.json()
        history = SidecarHistory.model_validate(body)
        assert (history.window, history.bucket_seconds) == ("hour", 10)
        prefix = next(p for p in history.prefixes if p.name == "10.255.0.53/32")
        assert [c.state for c in prefix.changes] == ["announced", *(s for _, s in FLAP)]
        assert prefix.changes[-1].reason == "service dns is down: timeout after 0.5s"
        assert body["prefixes"][1]["changes"][1]["at_iso"].endswith("Z")

    async def test_the_day_has_five_minute_buckets(self) -> None:
        async with client_for(make_app()) as client:
            body = await (await client.get("/history", params={"window": "day"})).json()
        assert (body["window"], body["bucket_seconds"]) == ("day", 300)
        assert body["first_bucket_start"] % 300 == 0
        assert body["bucket_count"] == 288
        probes = body["services"][0]["probes"]
        assert {len(column) for column in probes.values()} == {288}
        assert sum(probes["probes"]) == 740  # web, every 5 s for 3700 s

    @pytest.mark.parametrize("path", ["/history", "/"])
    async def test_an_unknown_window_is_a_clear_400(self, path: str) -> None:
        async with client_for(make_app()) as client:
            response = await client.get(path, params={"window": "week"})
            assert response.status == 400
            body = await response.json()
        assert body == {"error": "window: must be 'hour' or 'day' (got 'week')"}


class TestPage:
    def test_a_flap_is_drawn_as_bands_with_reasons(self) -> None:
        page = render_page(sample_status(), NOW, sample_recorder().snapshot("hour", NOW))
        row = _row(page, "data-prefix-history", "10.255.0.53/32")
        assert [state for _css, state in _BAND.findall(row)] == [
            "announced",
            "withdrawn",
            "announced",
            "withdrawn",
        ]
        assert "<title>withdrawn 13:43:20 \u2013 13:48:20: service dns is down" in row
        assert "3 changes" in row
        steady = _row(page, "data-prefix-history", "10.255.0.1/32")
        assert [state for _css, state in _BAND.findall(steady)] == ["announced"]

    def test_latency_line_and_failures_per_service(self) -> None:
        page = render_page(sample_status(), NOW, sample_recorder().snapshot("hour", NOW))
        dns = _row(page, "data-service-history", "dns")
        assert '<polyline class="latency"' in dns
        failures = [int(n) for n in re.findall(r'class="failure"[^>]*data-failures="(\d+)"', dns)]
        assert sum(failures) == 60 + 1
        web = _row(page, "data-service-history", "web")
        assert 'class="failure"' not in web
        rescue = _row(page, "data-rescue-history", "handed over")
        assert "71800 packets" in rescue

    def test_user_data_in_the_history_is_escaped(self) -> None:
        history = History(NOW - 100)
        evil = '"><script>alert(1)</script>'
        history.observe(fx.ServiceChanged(EVIL_SERVICE, False, evil), NOW - 50)
        history.observe(fx.PrefixChanged("10.255.0.1/32", "withdrawn", False, evil), NOW - 50)
        page = render_page(sample_status(), NOW, history.snapshot("hour", NOW))
        assert "<script>" not in page
        assert "&quot;&gt;&lt;script&gt;alert(1)" in page

    def test_where_changes_were_dropped_the_buckets_still_draw_the_timeline(self) -> None:
        """Announced for hours, then flapping longer than the kept changes: the quiet
        part is still a state band, the flapping buckets are orange with their counts."""
        history = History(NOW - 7200)
        history.observe(fx.PrefixChanged("10.255.0.1/32", "withdrawn", False, "start"), NOW - 7200)
        history.observe(fx.PrefixChanged("10.255.0.1/32", "announced", True, "up"), NOW - 7190)
        flips = CHANGES_KEPT + 200
        for second in range(flips):
            up = second % 2 == 1
            state: PrefixState = "announced" if up else "withdrawn"
            history.observe(
                fx.PrefixChanged("10.255.0.1/32", state, up, "flap"), NOW - 900 + second
            )
        page = render_page(sample_status(), NOW, history.snapshot("hour", NOW))
        row = _row(page, "data-prefix-history", "10.255.0.1/32")
        bands = _BAND.findall(row)
        assert bands[0] == ("announced", "announced")  # the quiet hour before the flapping
        assert "announced 13:13:20 \u2013 13:58:20 (reason not kept)" in row
        # The dropped changes as one mark, then the kept ones too narrow to draw one by
        # one (a second each) as another, then the last, wide band.
        marks = re.findall(r'class="band dropped"[^>]*data-changes="(\d+)"><title>([^<]*)', row)
        assert marks == [
            (
                "200",
                "200 changes 13:58:20 \u2013 14:01:40, announced \u2192 announced "
                "(details not kept: memory bound)",
            ),
            ("119", "119 changes 14:01:40 \u2013 14:03:39; the last: withdrawn, flap"),
        ]
        assert bands[-1] == ("announced", "announced")
        assert f"{flips} changes" in row

    def test_the_window_links_and_an_unrecorded_start(self) -> None:
        history = History(NOW - 600)  # started ten minutes ago
        history.observe(fx.PeerChanged("10.0.1.1", True, "up"), NOW - 600)
        page = render_page(sample_status(), NOW, history.snapshot("hour", NOW))
        assert '<a href="/?window=day">last day</a>' in page
        row = _row(page, "data-peer-history", "10.0.1.1")
        assert "not recorded before" in row

    def test_the_page_without_a_history_is_the_page_of_before(self) -> None:
        assert 'id="history"' not in render_page(sample_status(), NOW)


class TestText:
    def test_changes_table_timelines_and_sparklines(self) -> None:
        text = format_history(sample_recorder().snapshot("hour", NOW))
        lines = text.splitlines()
        assert lines[1].split() == ["TIME", "AGO", "KIND", "NAME", "STATE", "REASON"]
        last = lines[lines.index("") - 1].split()
        assert last[:5] == ["14:13:16", "4s", "service", "dns", "down"]
        strip = next(line for line in lines if line.startswith("prefix  10.255.0.53/32"))
        cells = strip.split()[2]
        assert len(cells) == COLUMNS
        assert "AwwwwwA" in cells  # withdrawn for five minutes, half an hour ago
        dns = next(line for line in lines if line.startswith("dns "))
        assert "!!!!!" in dns
        assert dns.split()[-1] == "61/718"

    def test_control_characters_do_not_reach_the_terminal(self) -> None:
        history = History(NOW - 100)
        history.observe(fx.ServiceChanged("web", False, "boom\x1b[2J\x07"), NOW - 10)
        text = format_history(history.snapshot("hour", NOW))
        assert "\x1b" not in text
        assert "\x07" not in text


class TestCli:
    async def test_status_history_prints_the_tables(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        runner = await start_http(make_app(FakeControl()), listen="127.0.0.1:0", unix_socket=None)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            assert await asyncio.to_thread(main, ["status", "--history", "--url", url]) == EXIT_OK
            hour = capsys.readouterr().out
            code = await asyncio.to_thread(main, ["status", "--history", "day", "--url", url])
            assert code == EXIT_OK
            day = capsys.readouterr().out
            assert (
                await asyncio.to_thread(main, ["status", "--history", "--json", "--url", url])
                == EXIT_OK
            )
            raw = capsys.readouterr().out
        finally:
            await runner.cleanup()
        assert hour.startswith("CHANGES (last hour")
        assert "service dns is down: timeout after 0.5s" in hour
        assert day.startswith("CHANGES (last day")
        assert SidecarHistory.model_validate_json(raw).window == "hour"

    def test_a_bad_window_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["status", "--history", "week"])
        assert exit_.value.code == 2
        assert "invalid choice: 'week'" in capsys.readouterr().err

    async def test_an_unparsable_history_is_an_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from aiohttp import web

        async def broken(_: web.Request) -> web.Response:
            return web.json_response({"window": "fortnight"})

        app = web.Application()
        app.router.add_get("/history", broken)
        runner = await start_http(app, listen="127.0.0.1:0", unix_socket=None)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            code = await asyncio.to_thread(main, ["status", "--history", "--url", url])
        finally:
            await runner.cleanup()
        assert code == EXIT_FAILURE
        assert "the sidecar's history does not parse" in capsys.readouterr().err
