"""The history section as a browser shows it: a flap is a red band between green ones.

Headless Chromium loads the page from the real aiohttp app (fake Control, whose history
comes from the real recorder: the dns prefix withdrawn for five minutes half an hour
ago, announced again, withdrawn 4 s ago). The DOM Chromium built holds the bands in
order with their tooltips; the screenshot, decoded here, holds them as pixels: a band
16 px high, red, with green on both sides, about 5/60 of the timeline wide.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anycast_announcer.http import start_http
from tests.integration.http.test_page_chromium import Element, _chromium, _run_chromium, parse
from tests.unit.http.fakes import FLAP, make_app

RED = (0xC6, 0x28, 0x28)  # rect.withdrawn
GREEN = (0x1A, 0x7F, 0x37)  # rect.announced
BAND_PX = 16


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    runner = await start_http(make_app(), listen="127.0.0.1:0", unix_socket=None)
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def _rows_with(document: Element, attribute: str) -> dict[str, Element]:
    return {row.attrs[attribute]: row for row in document.find_all("tr") if attribute in row.attrs}


async def test_the_dom_holds_the_flap_as_bands_with_reasons(page_url: str, tmp_path: Path) -> None:
    """In order: announced, withdrawn (five minutes), announced, withdrawn (now)."""
    binary = _chromium()
    document = parse(await _run_chromium(binary, tmp_path / "profile", "--dump-dom", page_url))
    assert document.find_all("script") == []
    rows = _rows_with(document, "data-prefix-history")
    assert list(rows) == ["10.255.0.1/32", "10.255.0.53/32"]
    bands = [r for r in rows["10.255.0.53/32"].find_all("rect") if "band" in r.attrs["class"]]
    assert [band.attrs["data-state"] for band in bands] == ["announced", *(s for _, s in FLAP)]
    withdrawn = bands[1]
    assert float(withdrawn.attrs["width"]) == pytest.approx(1000 * 300 / 3600, abs=0.1)
    tooltip = withdrawn.find_all("title")[0].text()
    assert tooltip.endswith("service dns is down: timeout after 0.5s")
    assert "3 changes" in rows["10.255.0.53/32"].text()
    steady = rows["10.255.0.1/32"].find_all("rect")
    assert [band.attrs["data-state"] for band in steady] == ["announced"]
    services = _rows_with(document, "data-service-history")
    assert set(services) >= {"web", "dns"}
    assert services["dns"].find_all("polyline")
    assert any("failure" in r.attrs["class"] for r in services["dns"].find_all("rect"))


def _png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), "an unexpected PNG layout"
    assert color in {2, 6}, "neither RGB nor RGBA"
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                nearest = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + nearest) & 0xFF
        previous = line
        rgb = bytes(line) if channels == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3)
        rows.append(rgb)
    return width, height, rows


def _runs(row: bytes, color: tuple[int, int, int]) -> list[tuple[int, int]]:
    """[start, end) in pixels of each horizontal run of exactly ``color`` (a band's fill;
    its anti-aliased edges are a pixel at most)."""
    pattern = re.compile(b"(?:" + re.escape(bytes(color)) + b")+")
    runs = []
    for match in pattern.finditer(row):
        start, end = match.start(), match.end()
        shift = -start % 3  # align to pixel boundaries
        if end - start - shift >= 3:
            runs.append(
                ((start + shift) // 3, (start + shift + (end - start - shift) // 3 * 3) // 3)
            )
    return runs


async def test_the_screenshot_shows_a_red_band_between_green_ones(
    page_url: str, tmp_path: Path
) -> None:
    """What a person sees: a red block the height of a band, green before and after it,
    about five minutes' worth (1/12) of the green timeline wide."""
    binary = _chromium()
    shot = tmp_path / "page.png"
    await _run_chromium(
        binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1100,700", page_url
    )
    _width, height, rows = _png_rgb(shot.read_bytes())
    if os.environ.get("ANYCAST_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["ANYCAST_KEEP_SCREENSHOT"])
    found: list[tuple[int, float]] = []
    for y, row in enumerate(rows):
        greens = _runs(row, GREEN)
        for start, end in _runs(row, RED):
            left = [g for g in greens if abs(g[1] - start) <= 2]
            right = [g for g in greens if abs(g[0] - end) <= 2]
            if end - start >= 20 and left and right:
                timeline = right[0][1] - left[0][0]
                found.append((y, (end - start) / timeline))
    assert found, "no red band with green on both sides in the screenshot"
    # As tall as a band (not a 6 px failure mark), and as wide as five minutes in sixty.
    assert len({y for y, _ in found}) >= BAND_PX - 2, found
    share = sorted(fraction for _, fraction in found)[len(found) // 2]
    # Up to the end of the timeline, less the 4 s withdrawn band at its end.
    assert share == pytest.approx(300 / (3600 - 4), abs=0.01), found
    assert height > 0
