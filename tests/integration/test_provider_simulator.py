"""The service-provider simulator (服务商 suite), exercised over real HTTP as a client would use it."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kefu.crypto import CryptoError, WXBizMsgCrypt
from local.sim_admin import SimAdmin
from local.wecom_sim import (
    DEMO_SUITE_AES_KEY,
    DEMO_SUITE_ID,
    DEMO_SUITE_SECRET,
    DEMO_SUITE_TOKEN,
    ProviderSimulator,
)
from tests.integration.test_simulator import T0, FakeClock
from tests.integration.test_simulator import _Receiver as Receiver

pytestmark = pytest.mark.integration

CORP_A, CORP_B = "wwcorpalpha000001", "wwcorpbravo000002"


def open_callback(request: tuple[str, bytes], receive_id: str) -> tuple[ET.Element, ET.Element]:
    """Verify and decrypt a captured callback with the suite's token and key; (envelope, event)."""
    path, body = request
    query = dict(httpx.URL(path).params)
    envelope = ET.fromstring(body)
    encrypted = envelope.findtext("Encrypt") or ""
    crypt = WXBizMsgCrypt(DEMO_SUITE_TOKEN, DEMO_SUITE_AES_KEY, receive_id)
    plain = crypt.verify_and_decrypt(query["msg_signature"], query["timestamp"], query["nonce"], encrypted)
    return envelope, ET.fromstring(plain)


@pytest.fixture()
def command() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture()
def data() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def _provider(command: Receiver, data: Receiver, **kwargs: Any) -> Iterator[ProviderSimulator]:
    sim = ProviderSimulator(clock=FakeClock(), **kwargs)
    sim.start()
    sim.set_callback_urls(command.url, data.url)
    yield sim
    sim.stop()


@pytest.fixture()
def provider(command: Receiver, data: Receiver) -> Iterator[ProviderSimulator]:
    yield from _provider(command, data)


@pytest.fixture()
def custom(command: Receiver, data: Receiver) -> Iterator[ProviderSimulator]:
    yield from _provider(command, data, app_kind="custom_app")


@pytest.fixture()
def http(provider: ProviderSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.base_url, timeout=10) as client:
        yield client


class Suite:
    """A minimal provider-side client over HTTP."""

    def __init__(self, http: httpx.Client, provider: ProviderSimulator) -> None:
        self.http = http
        self.provider = provider
        self.token = ""

    def post(self, api: str, body: Any, **params: str) -> dict[str, Any]:
        if api != "get_suite_token":
            params.setdefault("suite_access_token", self.token)
        return self.http.post(f"/cgi-bin/service/{api}", params=params, json=body).json()

    def suite_token(self, ticket: str | None = None, **override: str) -> dict[str, Any]:
        body = {"suite_id": DEMO_SUITE_ID, "suite_secret": DEMO_SUITE_SECRET,
                "suite_ticket": ticket if ticket is not None else self.provider.suite_tickets[-1], **override}
        answer = self.post("get_suite_token", body)
        if answer["errcode"] == 0:
            self.token = answer["suite_access_token"]
        return answer

    def install(self, corp_id: str, corp_name: str = "") -> dict[str, Any]:
        """Authorize the corp and exchange the auth code; the get_permanent_code answer."""
        code = self.provider.authorize(corp_id, corp_name=corp_name or f"Corp {corp_id}")
        answer = self.post("get_permanent_code", {"auth_code": code})
        assert answer["errcode"] == 0, answer
        return answer

    def corp_token(self, corp_id: str, permanent_code: str) -> dict[str, Any]:
        return self.post("get_corp_token", {"auth_corpid": corp_id, "permanent_code": permanent_code})

    def kf(self, path: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.http.post(f"/cgi-bin/{path}", params={"access_token": token}, json=body or {}).json()


@pytest.fixture()
def suite(http: httpx.Client, provider: ProviderSimulator) -> Suite:
    provider.push_suite_ticket()
    client = Suite(http, provider)
    assert client.suite_token()["errcode"] == 0
    return client


# ---------------------------------------------------------------- suite ticket and suite token


def test_suite_ticket_is_pushed_signed_and_encrypted(provider: ProviderSimulator, command: Receiver) -> None:
    ticket = provider.push_suite_ticket()
    assert provider.suite_tickets == [ticket]
    assert len(command.requests) == 1
    envelope, event = open_callback(command.requests[0], DEMO_SUITE_ID)
    assert envelope.findtext("ToUserName") == DEMO_SUITE_ID and envelope.findtext("AgentID") == ""
    assert event.findtext("SuiteId") == DEMO_SUITE_ID and event.findtext("InfoType") == "suite_ticket"
    assert event.findtext("SuiteTicket") == ticket and event.findtext("TimeStamp") == str(int(T0))
    record = provider.command_callbacks[-1]
    assert record["info_type"] == "suite_ticket" and record["status"] == 200 and record["body"] == "success"
    assert record["elapsed"] < 1
    with pytest.raises(CryptoError):  # the command callbacks' receiveid is the suite_id, not a corp
        open_callback(command.requests[0], CORP_A)

    echo = provider.signed_command_echo("5927782489442352469")
    crypt = WXBizMsgCrypt(DEMO_SUITE_TOKEN, DEMO_SUITE_AES_KEY, DEMO_SUITE_ID)
    assert crypt.verify_and_decrypt(echo["msg_signature"], echo["timestamp"], echo["nonce"], echo["echostr"]) \
        == "5927782489442352469"


def test_command_callback_statuses_are_recorded(provider: ProviderSimulator) -> None:
    failing = Receiver(status=500)
    try:
        provider.set_callback_urls(failing.url, None)
        provider.push_suite_ticket()
        provider.set_callback_urls("http://127.0.0.1:9/unreachable", None)
        provider.push_suite_ticket()
        provider.set_callback_urls(None, None)
        provider.push_suite_ticket()  # kept, not posted
    finally:
        failing.close()
    assert [c["status"] for c in provider.command_callbacks] == [500, 0, None]
    assert len(provider.suite_tickets) == 3


def test_suite_token_needs_the_right_suite_secret_and_a_recent_ticket(
    provider: ProviderSimulator, http: httpx.Client
) -> None:
    client = Suite(http, provider)
    first = provider.push_suite_ticket()
    ok = client.suite_token(first)
    assert ok["errcode"] == 0 and ok["errmsg"] == "ok" and ok["expires_in"] == 7200 and ok["suite_access_token"]
    assert client.suite_token(suite_id="wwsuiteother")["errcode"] == 40083
    wrong = client.suite_token(suite_secret="nope")
    assert wrong["errcode"] == 40080 and "more info at" in wrong["errmsg"]
    assert client.suite_token("forged-ticket")["errcode"] == 40085
    assert client.suite_token("")["errcode"] == 41023

    second = provider.push_suite_ticket()
    assert client.suite_token(first)["errcode"] == 0  # the one before the latest still works
    provider.push_suite_ticket()
    assert client.suite_token(first)["errcode"] == 40085  # two pushes back
    assert client.suite_token(second)["errcode"] == 0
    provider.advance(1800)
    assert client.suite_token(second)["errcode"] == 40085  # 30 minutes old
    assert client.suite_token()["errcode"] == 40085  # the latest too, pushed at the same time

    assert http.get("/cgi-bin/service/get_suite_token").json()["errcode"] == 43002
    not_object = http.post("/cgi-bin/service/get_suite_token", content=b"[1]").json()
    assert not_object["errcode"] == 47001
    assert provider.suite_token_count == 12  # every call counts, refused ones too


def test_pre_auth_code_and_session_info(provider: ProviderSimulator, suite: Suite) -> None:
    assert suite.http.get("/cgi-bin/service/get_pre_auth_code").json()["errcode"] == 41022
    bad = suite.http.get("/cgi-bin/service/get_pre_auth_code", params={"suite_access_token": "nope"}).json()
    assert bad["errcode"] == 40082
    answer = suite.http.get("/cgi-bin/service/get_pre_auth_code", params={"suite_access_token": suite.token}).json()
    assert answer["errcode"] == 0 and answer["expires_in"] == 1200
    pre = answer["pre_auth_code"]
    assert suite.post("get_pre_auth_code", {})["errcode"] == 43001

    assert suite.post("set_session_info", {"pre_auth_code": pre, "session_info": {"auth_type": 1}})["errcode"] == 0
    assert suite.post("set_session_info", {"pre_auth_code": pre, "session_info": {"auth_type": 2}})["errcode"] == 40058
    assert suite.post("set_session_info", {"pre_auth_code": "nope", "session_info": {}})["errcode"] == 40077

    provider.authorize(CORP_A, pre_auth_code=pre, state="from-link")
    corp = provider.provider_state()["corps"][0]
    assert corp["corp_id"] == CORP_A and corp["auth_type"] == 1 and corp["state"] == "from-link"

    provider.advance(1200)
    assert suite.post("set_session_info", {"pre_auth_code": pre, "session_info": {}})["errcode"] == 42007
    with pytest.raises(ValueError):
        provider.authorize(CORP_B, pre_auth_code=pre)
    provider.advance(6000)
    assert suite.post("set_session_info", {"pre_auth_code": pre, "session_info": {}})["errcode"] == 42009


# ---------------------------------------------------------------- authorization


def test_authorize_posts_create_auth_and_the_auth_code_works_once(
    provider: ProviderSimulator, suite: Suite, command: Receiver
) -> None:
    code = provider.authorize(CORP_A, corp_name="Alpha Ltd", state="s1")
    _, event = open_callback(command.requests[-1], DEMO_SUITE_ID)
    assert event.findtext("InfoType") == "create_auth" and event.findtext("AuthCode") == code
    assert event.findtext("State") == "s1" and event.findtext("SuiteId") == DEMO_SUITE_ID

    answer = suite.post("get_permanent_code", {"auth_code": code})
    assert answer["errcode"] == 0
    assert answer["permanent_code"] == provider.permanent_code(CORP_A) and answer["expires_in"] == 7200
    info = answer["auth_corp_info"]
    assert info["corpid"] == CORP_A and info["corp_name"] == "Alpha Ltd" and info["corp_type"] == "verified"
    agent = answer["auth_info"]["agent"][0]
    assert isinstance(agent["agentid"], int) and agent["name"] == "Kefu" and agent["is_customized_app"] is False
    assert answer["auth_user_info"]["userid"] == "admin"
    assert suite.kf("kf/account/list", answer["access_token"])["errcode"] == 0  # the token that came with it

    assert suite.post("get_permanent_code", {"auth_code": code})["errcode"] == 40078  # used
    with pytest.raises(ValueError):
        provider.authorize(CORP_A)  # already authorized
    late = provider.authorize(CORP_B)
    provider.advance(600)
    assert suite.post("get_permanent_code", {"auth_code": late})["errcode"] == 40078  # over 10 minutes

    status = provider.change_auth(CORP_A, state="s2")
    _, changed = open_callback(command.requests[-1], DEMO_SUITE_ID)
    assert status == 200 and changed.findtext("InfoType") == "change_auth"
    assert changed.findtext("AuthCorpId") == CORP_A and changed.findtext("State") == "s2"

    auth_info = suite.post("get_auth_info", {"auth_corpid": CORP_A, "permanent_code": answer["permanent_code"]})
    assert auth_info["errcode"] == 0 and auth_info["auth_corp_info"]["corpid"] == CORP_A
    assert auth_info["auth_info"]["agent"][0]["agentid"] == agent["agentid"]


def test_corp_tokens_reach_only_their_own_corp(provider: ProviderSimulator, suite: Suite) -> None:
    codes = {corp: suite.install(corp)["permanent_code"] for corp in (CORP_A, CORP_B)}
    kf_a = provider.corp(CORP_A).add_account(name="Alpha Desk")
    kf_b = provider.corp(CORP_B).add_account(name="Bravo Desk")

    tokens = {}
    for corp, code in codes.items():
        answer = suite.corp_token(corp, code)
        assert answer["errcode"] == 0 and answer["expires_in"] == 7200
        tokens[corp] = answer["access_token"]
    listed_a = suite.kf("kf/account/list", tokens[CORP_A])
    listed_b = suite.kf("kf/account/list", tokens[CORP_B])
    assert [a["open_kfid"] for a in listed_a["account_list"]] == [kf_a]
    assert [a["open_kfid"] for a in listed_b["account_list"]] == [kf_b]
    euid, _ = provider.corp(CORP_B).customer_enter(kf_b, welcome=False)
    assert suite.kf("kf/sync_msg", tokens[CORP_A], {"open_kfid": kf_b})["errcode"] == 95000  # not A's account
    assert suite.kf("kf/sync_msg", tokens[CORP_B], {"open_kfid": kf_b})["errcode"] == 0
    assert provider.corp(CORP_A).calls_to("kf/sync_msg")[0]["errcode"] == 95000

    assert suite.kf("kf/account/list", "forged")["errcode"] == 40014
    assert suite.http.post("/cgi-bin/kf/account/list", json={}).json()["errcode"] == 41001
    assert suite.corp_token(CORP_A, codes[CORP_B])["errcode"] == 40084
    assert suite.corp_token("wwunknowncorp", codes[CORP_A])["errcode"] == 40084
    assert suite.post("get_corp_token", {"auth_corpid": CORP_A})["errcode"] == 41025
    assert suite.post("get_corp_token", {"auth_corpid": CORP_A, "permanent_code": codes[CORP_A]},
                      suite_access_token="nope")["errcode"] == 40082
    assert provider.corp_token_count(CORP_A) == 3 and provider.corp_token_count(CORP_B) == 1

    # A third-party corp's own gettoken secret is not the permanent code.
    gettoken = suite.http.get("/cgi-bin/gettoken", params={"corpid": CORP_A, "corpsecret": codes[CORP_A]}).json()
    assert gettoken["errcode"] == 40001
    provider.advance(7200)
    assert suite.kf("kf/account/list", tokens[CORP_A])["errcode"] == 42001  # the corp answers for its token
    assert euid


def test_a_customer_message_is_a_data_callback_signed_for_the_corp(
    provider: ProviderSimulator, suite: Suite, data: Receiver
) -> None:
    code = suite.install(CORP_A)["permanent_code"]
    sim = provider.corp(CORP_A)
    kf = sim.add_account(name="Alpha Desk")
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "hello")
    assert len(data.requests) == 2
    envelope, event = open_callback(data.requests[-1], CORP_A)
    assert envelope.findtext("ToUserName") == CORP_A
    assert event.findtext("Event") == "kf_msg_or_event" and event.findtext("OpenKfId") == kf
    with pytest.raises(CryptoError):  # receiveid is the corp, not the suite
        open_callback(data.requests[-1], DEMO_SUITE_ID)

    token = suite.corp_token(CORP_A, code)["access_token"]
    page = suite.kf("kf/sync_msg", token, {"open_kfid": kf, "token": event.findtext("Token") or ""})
    assert page["errcode"] == 0 and [m.get("text", {}).get("content") for m in page["msg_list"]][-1] == "hello"


def test_cancel_auth_revokes_codes_and_tokens_and_keeps_the_data(
    provider: ProviderSimulator, suite: Suite, command: Receiver, data: Receiver
) -> None:
    installed = suite.install(CORP_A)
    code = installed["permanent_code"]
    sim = provider.corp(CORP_A)
    kf = sim.add_account(name="Alpha Desk")
    token = suite.corp_token(CORP_A, code)["access_token"]
    assert suite.kf("kf/account/list", token)["errcode"] == 0

    assert provider.cancel_auth(CORP_A) == 200
    _, event = open_callback(command.requests[-1], DEMO_SUITE_ID)
    assert event.findtext("InfoType") == "cancel_auth" and event.findtext("AuthCorpId") == CORP_A
    assert provider.is_cancelled(CORP_A) and provider.permanent_code(CORP_A) is None
    assert suite.kf("kf/account/list", token)["errcode"] == 40014
    assert suite.kf("kf/account/list", installed["access_token"])["errcode"] == 40014
    assert suite.corp_token(CORP_A, code)["errcode"] == 40084
    assert suite.post("get_auth_info", {"auth_corpid": CORP_A, "permanent_code": code})["errcode"] == 40084

    before = len(data.requests)
    euid, _ = sim.customer_enter(kf, welcome=False)  # the data stays; no callback goes out
    assert len(data.requests) == before and len(sim.messages(kf)) == 1
    with pytest.raises(ValueError):
        provider.change_auth(CORP_A)

    again = suite.install(CORP_A)  # a new install starts over
    assert again["permanent_code"] != code and not provider.is_cancelled(CORP_A)
    fresh = suite.corp_token(CORP_A, again["permanent_code"])["access_token"]
    assert suite.kf("kf/account/list", fresh)["account_list"][0]["open_kfid"] == kf
    assert euid


def test_custom_app_uses_gettoken_with_the_permanent_code(
    custom: ProviderSimulator, command: Receiver
) -> None:
    with httpx.Client(base_url=custom.base_url, timeout=10) as http:
        custom.push_suite_ticket()
        suite = Suite(http, custom)
        assert suite.suite_token()["errcode"] == 0
        installed = suite.install(CORP_A)
        secret = installed["permanent_code"]
        assert installed["auth_info"]["agent"][0]["is_customized_app"] is True
        assert suite.corp_token(CORP_A, secret)["errcode"] == 40086

        def gettoken(corpid: str, corpsecret: str) -> dict[str, Any]:
            return http.get("/cgi-bin/gettoken", params={"corpid": corpid, "corpsecret": corpsecret}).json()

        answer = gettoken(CORP_A, secret)
        assert answer["errcode"] == 0 and answer["expires_in"] == 7200
        assert suite.kf("kf/account/list", answer["access_token"])["errcode"] == 0
        assert gettoken(CORP_A, "wrong")["errcode"] == 40001
        assert gettoken("wwunknowncorp", secret)["errcode"] == 40013
        assert custom.corp(CORP_A).gettoken_count == 2

        reset = custom.reset_permanent_code(CORP_A)
        _, event = open_callback(command.requests[-1], DEMO_SUITE_ID)
        assert event.findtext("InfoType") == "reset_permanent_code" and event.findtext("AuthCode") == reset
        assert gettoken(CORP_A, secret)["errcode"] == 0  # the old secret works until the exchange
        renewed = suite.post("get_permanent_code", {"auth_code": reset})
        assert renewed["errcode"] == 0 and renewed["permanent_code"] != secret
        assert gettoken(CORP_A, secret)["errcode"] == 40001
        assert gettoken(CORP_A, renewed["permanent_code"])["errcode"] == 0

        custom.cancel_auth(CORP_A)
        assert gettoken(CORP_A, renewed["permanent_code"])["errcode"] == 40001


def test_reset_permanent_code_is_for_custom_apps_only(provider: ProviderSimulator, suite: Suite) -> None:
    suite.install(CORP_A)
    with pytest.raises(ValueError):
        provider.reset_permanent_code(CORP_A)


def test_kf_account_auth_change_is_a_data_callback(
    provider: ProviderSimulator, suite: Suite, data: Receiver
) -> None:
    code = suite.install(CORP_A)["permanent_code"]
    sim = provider.corp(CORP_A)
    kept, taken = sim.add_account(name="Kept"), sim.add_account(name="Taken")
    given = sim.add_account(name="Given", manage_privilege=False)
    token = suite.corp_token(CORP_A, code)["access_token"]
    assert suite.kf("kf/sync_msg", token, {"open_kfid": given})["errcode"] == 48002

    assert provider.kf_account_auth_change(CORP_A, added=[given], removed=[taken]) == [200]
    envelope, event = open_callback(data.requests[-1], CORP_A)
    assert envelope.findtext("ToUserName") == CORP_A
    assert event.findtext("ToUserName") == CORP_A and event.findtext("FromUserName") == "sys"
    assert event.findtext("MsgType") == "event" and event.findtext("Event") == "kf_account_auth_change"
    assert [e.text for e in event.findall("AuthAddOpenKfId")] == [given]
    assert [e.text for e in event.findall("AuthDelOpenKfId")] == [taken]
    assert suite.kf("kf/sync_msg", token, {"open_kfid": given})["errcode"] == 0
    assert suite.kf("kf/sync_msg", token, {"open_kfid": taken})["errcode"] == 48002
    assert suite.kf("kf/sync_msg", token, {"open_kfid": kept})["errcode"] == 0
    with pytest.raises(ValueError):
        provider.kf_account_auth_change(CORP_A, added=["wkunknown"])


# ---------------------------------------------------------------- admin over HTTP


def test_admin_actions_and_forwarding_to_a_corp(
    provider: ProviderSimulator, http: httpx.Client, command: Receiver, data: Receiver
) -> None:
    def admin(action: str, **args: Any) -> httpx.Response:
        return http.post(f"/sim/{action}", json=args)

    ticket = admin("push_suite_ticket").json()["result"]
    assert ticket == provider.suite_tickets[-1]
    code = admin("authorize", corp_id=CORP_A, corp_name="Alpha Ltd", state="x").json()["result"]
    _, event = open_callback(command.requests[-1], DEMO_SUITE_ID)
    assert event.findtext("AuthCode") == code
    assert admin("add_corp", corp_id=CORP_B).json()["result"]["corp_id"] == CORP_B

    state = http.get("/sim/state").json()
    assert state == admin("provider_state").json()["result"]
    assert state["suite_id"] == DEMO_SUITE_ID and [c["corp_id"] for c in state["corps"]] == [CORP_A, CORP_B]
    assert state["latest_suite_ticket"] == ticket and state["command_callbacks"][-1]["info_type"] == "create_auth"

    kf = admin(f"corp/{CORP_A}/add_account", name="Alpha Desk").json()["result"]
    euid, _ = admin(f"corp/{CORP_A}/customer_enter", open_kfid=kf, welcome=False).json()["result"]
    assert admin(f"corp/{CORP_A}/customer_says", open_kfid=kf, external_userid=euid, text="hi").json()["ok"]
    assert len(data.requests) == 2 and open_callback(data.requests[-1], CORP_A)[1].findtext("OpenKfId") == kf
    corp_state = http.get(f"/sim/corp/{CORP_A}/state").json()
    assert [s["external_userid"] for s in corp_state["sessions"]] == [euid]
    assert provider.corp(CORP_B).state()["accounts"] == []

    with SimAdmin(provider.corp_admin_url(CORP_A)) as corp_admin:  # another process's view of one corp
        corp_admin.call("customer_says", open_kfid=kf, external_userid=euid, text="again")
        assert len(corp_admin.state()["sessions"]) == 1
    with SimAdmin(provider.base_url) as provider_admin:
        assert provider_admin.state()["corps"][0]["corp_name"] == "Alpha Ltd"

    assert admin("cancel_auth", corp_id=CORP_A).json()["result"] == 200
    assert provider.is_cancelled(CORP_A)
    assert admin("cancel_auth", corp_id=CORP_A).status_code == 400  # already cancelled
    assert admin("authorize").status_code == 400  # missing arguments
    assert admin("eval", code="1").status_code == 404
    assert admin("_auth", corp_id=CORP_A).status_code == 404
    assert admin(f"corp/{CORP_A}/eval").status_code == 404
    assert admin("corp/wwnobody/add_account", name="x").status_code == 404
    assert http.get("/sim/push_suite_ticket").status_code == 405
    assert http.get("/elsewhere").status_code == 404


def test_auto_ticket_pushes_on_a_timer(command: Receiver, data: Receiver) -> None:
    with ProviderSimulator(auto_ticket_seconds=0.05) as sim:
        sim.set_callback_urls(command.url, data.url)
        deadline = time.monotonic() + 5
        while len(command.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(command.requests) >= 2
    tickets = [open_callback(r, DEMO_SUITE_ID)[1].findtext("SuiteTicket") for r in command.requests]
    assert tickets == sim.suite_tickets[-len(tickets):]
