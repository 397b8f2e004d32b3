"""The status page as a browser shows it: headless Chromium against the real app.

Chromium loads the page from the aiohttp app (fake Control) on 127.0.0.1 and dumps the
DOM it built; the assertions read that DOM the way a person reads the screen: one badge
per prefix, the withdrawn prefix's reason, the service whose name is a ``<script>`` tag
shown as text and not run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from anycast_announcer.http import start_http
from tests.prerequisites import unavailable
from tests.unit.http.fakes import EVIL_SERVICE, make_app

CHROMIUM_TIMEOUT = 60.0


def _chromium() -> str:
    """The chromium binary; skip without it, but in CI (CI set) fail instead."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    unavailable("headless Chromium is not installed: run `make test-deps`")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        return " ".join(
            " ".join(child.split()) if isinstance(child, str) else child.text()
            for child in self.children
        ).strip()

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            if isinstance(child, Element):
                found += child.iter()
        return found

    def find_all(self, tag: str | None = None, css: str | None = None) -> list[Element]:
        return [
            element
            for element in self.iter()
            if (tag is None or element.tag == tag)
            and (css is None or css in element.attrs.get("class", "").split())
        ]


_VOID = {"meta", "link", "br", "img", "input", "hr", "base", "col", "source", "wbr"}


class _TreeBuilder(HTMLParser):
    """Enough of a DOM for Chromium's own serialization (well nested by construction)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(dom: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(dom)
    builder.close()
    return builder.root


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    runner = await start_http(make_app(), listen="127.0.0.1:0", unix_socket=None)
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def _run_chromium(binary: str, profile: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",  # we run as root in CI containers
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CHROMIUM_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not finish within {CHROMIUM_TIMEOUT:g}s") from None
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode("utf-8", errors="replace")


async def test_page_shows_prefix_states_and_escapes_user_data(
    page_url: str, tmp_path: Path
) -> None:
    """What a person sees: badges per prefix, the reason, names as text, no script run."""
    binary = _chromium()
    dom = await _run_chromium(binary, tmp_path / "profile", "--dump-dom", page_url)
    document = parse(dom)

    # The title is intact: the <script> in a service name did not run (it would set it).
    # (The other <title> elements are the history's SVG tooltips, in the body.)
    (head,) = document.find_all("head")
    assert [title.text() for title in head.find_all("title")] == ["anycast-announcer"]
    assert document.find_all("script") == [], "a script element made it into the DOM"

    cards = {card.attrs["data-prefix"]: card for card in document.find_all("section", "prefix")}
    assert list(cards) == ["10.255.0.1/32", "10.255.0.53/32"]
    badges = {prefix: card.find_all("span", "big") for prefix, card in cards.items()}
    assert [badge.text() for badge in badges["10.255.0.1/32"]] == ["announced"]
    assert [badge.text() for badge in badges["10.255.0.53/32"]] == ["withdrawn"]
    assert "withdrawn" in badges["10.255.0.53/32"][0].attrs["class"].split()
    reasons = [div.text() for div in cards["10.255.0.53/32"].find_all("div", "reason")]
    assert reasons == ["service dns is down: timeout after 0.5s"]

    rows = {
        row.attrs["data-service"]: row
        for row in document.find_all("tr")
        if "data-service" in row.attrs
    }
    assert set(rows) == {"web", "dns", EVIL_SERVICE}
    # The evil name is shown literally, as text, in its cell.
    assert rows[EVIL_SERVICE].find_all("td")[0].text() == EVIL_SERVICE
    assert "timeout after 0.5s" in rows["dns"].text()
    assert "down" in rows["dns"].text()

    peers = [row.attrs["data-peer"] for row in document.find_all("tr") if "data-peer" in row.attrs]
    assert peers == ["10.0.1.1", "fd00:1::1"]
    exabgp = next(e for e in document.find_all("p") if e.attrs.get("id") == "exabgp")
    assert "running, pid 4242, connected" in exabgp.text()


async def test_page_renders_to_a_screenshot(page_url: str, tmp_path: Path) -> None:
    """The page lays out in a real renderer (a non-trivial PNG comes out)."""
    binary = _chromium()
    shot = tmp_path / "page.png"
    await _run_chromium(
        binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900", page_url
    )
    data = shot.read_bytes()  # chromium has exited; a small local file
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    if os.environ.get("ANYCAST_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["ANYCAST_KEEP_SCREENSHOT"])
