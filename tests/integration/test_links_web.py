"""examples/web/ in headless Chromium against the local stack: the button's href and the QR code.

The page is served over HTTP from 127.0.0.1 (its origin is the stack's LinkCorsOrigins), fetches
a link from /links, and shows it as a button and as the SVG QR code. The QR code is read back from
a screenshot of what Chromium rendered. Debian's chromium is driven by Playwright; nothing is
downloaded (no `playwright install`).
"""

from __future__ import annotations

import functools
import json
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.qrcodes import decode_png
from tests.support.browser import CHROMIUM

WEB = Path(__file__).resolve().parents[2] / "examples" / "web"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium; .ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PAGE_PORT = _free_port()
ORIGIN = f"http://127.0.0.1:{PAGE_PORT}"
ACCOUNT = "wkWEB000000000000000000000000001"
STACK_ENV = {"KEFU_TEMPLATE_PARAMS": json.dumps({"LinkAccounts": f"web={ACCOUNT}", "LinkCorsOrigins": ORIGIN})}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def _serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(WEB)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"web-{port}", daemon=True).start()
    return server


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = _serve(PAGE_PORT)
    yield ORIGIN
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stranger_site() -> Iterator[str]:
    """The same page from an origin the stack does not allow."""
    server = _serve(0)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()



@pytest.fixture(scope="module", autouse=True)
def account(simulator) -> None:
    simulator.add_account(open_kfid=ACCOUNT, name="Web")


def open_page(browser, origin: str, api: str, **settings: str):
    page = browser.new_page(viewport={"width": 600, "height": 700}, device_scale_factor=1)
    page.goto(f"{origin}/index.html?{urlencode({'api': api, **settings})}")
    page.wait_for_selector("body:not([data-state=loading])", timeout=15000)
    return page


def test_page_shows_the_link_as_button_and_qr_code(browser, site, stack, simulator) -> None:
    param = "landing/spring-sale?utm=页面"
    page = open_page(browser, site, stack.url, scene="web_home", scene_param=param)
    try:
        assert page.get_attribute("body", "data-state") == "ready", page.text_content("#status")
        href = page.get_attribute("#contact", "href")
        expected = httpx.get(f"{stack.url}/links", params={"scene": "web_home", "scene_param": param}).json()["url"]
        assert href == expected
        assert page.get_attribute("#contact", "aria-disabled") is None
        shot = page.locator("#qr").screenshot()
        assert decode_png(shot) == [href]  # what a phone would read off the screen
    finally:
        page.close()
    euid, _ = simulator.customer_enter_via_link(href)
    entered = [m["event"] for m in simulator.messages(ACCOUNT)
               if m.get("event", {}).get("event_type") == "enter_session" and m["event"]["external_userid"] == euid]
    assert [(e["scene"], e["scene_param"]) for e in entered] == [("web_home", param)]


def test_page_from_an_origin_not_allowed_cannot_read_the_link(browser, stranger_site, stack) -> None:
    page = open_page(browser, stranger_site, stack.url, scene="web_home")
    try:
        assert page.get_attribute("body", "data-state") == "error"
        assert page.get_attribute("#contact", "aria-disabled") == "true"
        assert "could not be loaded" in (page.text_content("#status") or "")
    finally:
        page.close()


def test_page_shows_kefus_reason_for_a_bad_scene(browser, site, stack) -> None:
    page = open_page(browser, site, stack.url, scene="not a scene")
    try:
        assert page.get_attribute("body", "data-state") == "error"
        assert "scene is required" in (page.text_content("#status") or "")
    finally:
        page.close()
