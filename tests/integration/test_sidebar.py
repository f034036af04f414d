"""The servicer sidebar (客户工具栏) in headless Chromium against the local stack, with WeCom's
JS-SDK replaced by a stub that plays WeCom's part: it hands the page the current customer and
records what the page asks it to send. The page signs in with a code from the simulator's OAuth2
and shows the customer's scene, profile and history - to a servicer of the customer's account
only. A screenshot is kept in build/artifacts/sidebar.png."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import CHROMIUM
from tests.support.stack import wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
REPLIES = ["您好，我来帮您查一下", "稍等"]
STACK_ENV = {"KEFU_TEMPLATE_PARAMS": json.dumps({"WeComAgentId": "1000002", "SidebarReplies": "|".join(REPLIES)})}
SHOP = "wkSIDEshop".ljust(32, "0")
OTHER = "wkSIDEother".ljust(32, "0")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium; .ci/run installs it)"),
]

# WeCom's JS-SDK, played by the test: config and agentConfig succeed (the test checks the
# signatures afterwards), getCurExternalContact names the customer, sendChatMessage is recorded.
STUB = """
window.__sent = [];
window.wx = {
  config(c) { window.__config = c; setTimeout(() => this._ready && this._ready(), 0); },
  ready(fn) { this._ready = fn; }, error(fn) { this._error = fn; },
  agentConfig(c) { window.__agent = c; setTimeout(() => c.success({}), 0); },
  invoke(name, args, cb) {
    if (name === "getCurExternalContact") cb({err_msg: name + ":ok", userId: window.__customer});
    else if (name === "sendChatMessage") { window.__sent.push(args); cb({err_msg: name + ":ok"}); }
    else cb({err_msg: name + ":ok", entry: "single_kf_tools"});
  },
};
"""



@pytest.fixture(scope="module")
def customer(stack, simulator) -> str:
    simulator.set_upgrade_config(userids=["alice", "bob"])
    simulator.add_account(open_kfid=SHOP, name="shop")
    simulator.add_servicer(SHOP, "alice")
    simulator.add_account(open_kfid=OTHER, name="other")
    simulator.add_servicer(OTHER, "bob")
    for k in (SHOP, OTHER):  # each account's first pull: a catch-up of nothing old
        simulator.customer_enter(k, external_userid=f"wmwarm{k[6:12]}")
        wait_for(lambda k=k: any(c["open_kfid"] == k and c.get("errcode") == 0 for c in simulator.sync_calls),
                 message="first pull")
    euid, _ = simulator.customer_enter(SHOP, scene="poster", scene_param="city=上海", nickname="小王")
    simulator.customer_says(SHOP, euid, "我的订单到哪了？")
    wait_for(lambda: simulator.session(SHOP, euid)["service_state"] == 3, message="with alice")
    return euid


def open_sidebar(browser, stack, simulator, userid: str, euid: str) -> Any:
    page = browser.new_page(viewport={"width": 420, "height": 760}, device_scale_factor=1)
    page.add_init_script(f"window.__customer = {json.dumps(euid)};")
    for host in ("https://res.wx.qq.com/**", "https://open.work.weixin.qq.com/**"):
        page.route(host, lambda route: route.fulfill(status=200, content_type="application/javascript", body=STUB))
    page.goto(f"{stack.url}/sidebar?code={simulator.oauth_code(userid)}")
    page.wait_for_selector("#customer:not([hidden]), #error:not([hidden])", timeout=15000)
    return page


def test_a_servicer_sees_the_customers_scene_profile_and_history_and_sends_a_canned_reply(
        browser, stack, simulator, customer) -> None:
    page = open_sidebar(browser, stack, simulator, "alice", customer)
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    assert page.locator("#who").text_content() == "小王"
    assert page.locator("#entries .scene").first.text_content() == "poster"
    assert page.locator("#entries .scene-param").first.text_content() == "city=上海"
    assert "我的订单到哪了？" in page.locator("#messages").text_content()
    assert "with a servicer" in page.locator("#session").text_content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sidebar.png"), full_page=True)
    # The page registered with signatures WeCom's JS-SDK would accept (the page's URL, the tickets).
    url = f"{stack.url}/sidebar"
    for name, kind in (("__config", "corp"), ("__agent", "agent")):
        sent = page.evaluate(f"window.{name}")
        plain = f"jsapi_ticket={simulator.jsapi_ticket(kind)}&noncestr={sent['nonceStr']}&timestamp={sent['timestamp']}&url={url}"
        assert sent["signature"] == hashlib.sha1(plain.encode()).hexdigest(), name  # noqa: S324 - WeCom's algorithm
    assert page.evaluate("window.__agent.agentid") == "1000002"
    page.get_by_role("button", name="稍等").click()
    assert page.evaluate("window.__sent") == [{"msgtype": "text", "enterChat": True, "text": {"content": "稍等"}}]
    # 升级服务: the servicer offers themself as a contact.
    page.locator("button.upgrade").click()
    page.wait_for_selector("button.upgrade[disabled]", timeout=10000)
    (offer,) = simulator.upgrade_offers(SHOP, customer)
    assert (offer["type"], offer["target"]) == (1, "alice")
    page.close()


def test_a_servicer_of_another_account_is_refused(browser, stack, simulator, customer) -> None:
    page = open_sidebar(browser, stack, simulator, "bob", customer)
    assert page.locator("#customer").is_hidden()
    assert "none of the kf accounts you serve" in page.locator("#error").text_content()
    page.close()


def test_the_sidebar_reads_nothing_without_a_valid_sign_in(stack, simulator, customer) -> None:
    http = httpx.Client(base_url=stack.url, timeout=10)
    assert http.get("/sidebar/customer", params={"external_userid": customer}).status_code == 401
    forged = http.get("/sidebar/customer", params={"external_userid": customer},
                      headers={"Authorization": "Bearer YWxpY2V8OTk5OTk5OTk5OXxmb3JnZWQ="})
    assert forged.status_code == 401
    assert http.post("/sidebar/session", json={"code": "not-a-code"}).status_code == 401
    code = simulator.oauth_code("alice")
    assert http.post("/sidebar/session", json={"code": code}).status_code == 200
    assert http.post("/sidebar/session", json={"code": code}).status_code == 401  # a code works once
    assert http.post("/sidebar/session", content=b"[]").status_code == 400
    token = http.post("/sidebar/session", json={"code": simulator.oauth_code("alice")}).json()["token"]
    bad = http.get("/sidebar/customer", params={"external_userid": "nope"}, headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_external_userid"
    page = http.get("/sidebar")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "我的订单" not in page.text  # the page holds no data
