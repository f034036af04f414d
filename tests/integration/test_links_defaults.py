"""GET /links on a stack deployed with the template's defaults: no aliases, no scene list, no CORS.

The default account is then the one account the app manages, found with kf/account/list once
per container; browsers from any origin are refused (no CORS headers, preflight included).
"""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration

ONLY = "wkONLY00000000000000000000000001"


@pytest.fixture(scope="module", autouse=True)
def account(simulator) -> None:
    simulator.add_account(open_kfid=ONLY, name="The only one")


def test_default_account_is_discovered_once(stack, simulator) -> None:
    before = len(simulator.calls_to("kf/account/list"))
    for scene in ("home", "footer", "home", "ad_2026"):
        answer = httpx.get(f"{stack.url}/links", params={"scene": scene}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["open_kfid"] == ONLY
    assert len(simulator.calls_to("kf/account/list")) - before == 1
    assert len(simulator.calls_to("kf/add_contact_way")) == 3


def test_any_valid_scene_is_allowed_without_a_list(stack) -> None:
    answer = httpx.get(f"{stack.url}/links", params={"scene": "Any-Scene_42", "format": "svg"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert answer.headers["cache-control"] == "public, max-age=3600"  # LinkCacheSeconds' default


def test_no_origin_is_allowed_by_default(stack) -> None:
    origin = "http://127.0.0.1:8000"
    preflight = httpx.options(f"{stack.url}/links", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    simple = httpx.get(f"{stack.url}/links", params={"scene": "home"}, headers={"Origin": origin})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
