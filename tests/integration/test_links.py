"""GET /links through the local stack's HTTP port, with WeCom played by the simulator.

This module's stack is configured the way a deployment would be: two account aliases, an
allow-list of scenes and one CORS origin (template parameters, through KEFU_TEMPLATE_PARAMS).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from tests.qrcodes import decode_png, decode_svg

pytestmark = pytest.mark.integration

SALES = "wkSALES0000000000000000000000001"
SUPPORT = "wkSUPPORT00000000000000000000002"
STRAY = "wkSTRAY0000000000000000000000003"  # an account of the corp that is not configured
ORIGIN = "https://shop.example.com"
SCENES = ["home", "poster", "race", "param", "qr", "cors", "funnel", "alias", "stray", "twenty", "memory"]
STACK_ENV = {"KEFU_TEMPLATE_PARAMS": json.dumps({
    "LinkAccounts": f"sales={SALES},support={SUPPORT}",
    "LinkScenes": ",".join(SCENES),
    "LinkCorsOrigins": f"{ORIGIN},http://127.0.0.1:8000",
    "LinkCacheSeconds": "600",
})}


@pytest.fixture(scope="module", autouse=True)
def accounts(simulator) -> None:
    for open_kfid, name in ((SALES, "Sales"), (SUPPORT, "Support"), (STRAY, "Stray")):
        simulator.add_account(open_kfid=open_kfid, name=name)


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def no_faults(simulator):
    simulator.clear_faults()
    yield
    simulator.clear_faults()


def links(http: httpx.Client, **params: str) -> httpx.Response:
    return http.get("/links", params=params)


def wecom_url(simulator, open_kfid: str, scene: str) -> str:
    """What kf/add_contact_way answers for this account and scene (the simulator's links are
    stable per account and scene), asked over HTTP like any WeCom client would."""
    base = f"{simulator.base_url}/cgi-bin"
    token = httpx.get(f"{base}/gettoken", params={"corpid": simulator.corp_id,
                                                   "corpsecret": simulator.corp_secret}).json()["access_token"]
    answer = httpx.post(f"{base}/kf/add_contact_way", params={"access_token": token},
                        json={"open_kfid": open_kfid, "scene": scene}).json()
    return str(answer["url"])


def test_twenty_requests_for_a_scene_call_add_contact_way_once(http, simulator) -> None:
    before = len(simulator.calls_to("kf/add_contact_way"))
    answers = [links(http, scene="twenty", scene_param=f"visitor-{i}") for i in range(20)]
    assert [a.status_code for a in answers] == [200] * 20
    calls = simulator.calls_to("kf/add_contact_way")[before:]
    assert len(calls) == 1
    assert calls[0]["body"] == {"open_kfid": SALES, "scene": "twenty"}  # no scene_param sent to WeCom
    bases = {a.json()["url"].split("&scene_param=")[0] for a in answers}
    assert len(bases) == 1


def test_ten_concurrent_first_requests_store_one_url(http, simulator, stack, clients) -> None:
    scene = "race"
    simulator.inject_fault("kf/add_contact_way", delay=1.0, times=10)  # hold WeCom so all ten overlap
    before = len(simulator.calls_to("kf/add_contact_way"))
    gate, answers = threading.Barrier(10), []

    def fetch() -> None:
        gate.wait()
        answers.append(httpx.get(f"{stack.url}/links", params={"scene": scene}, timeout=10))

    threads = [threading.Thread(target=fetch) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.json()["url"] for a in answers}) == 1
    assert len(simulator.calls_to("kf/add_contact_way")) - before >= 2  # the race really happened
    stored = clients.dynamodb.query(
        TableName=stack.resources["StateTable"], KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"link#{SALES}"}})["Items"]
    race = [item for item in stored if item["sk"]["S"] == scene]
    assert len(race) == 1 and race[0]["url"]["S"] == answers[0].json()["url"]


def test_racing_writers_with_different_urls_agree_on_the_first(stack, aws_endpoint, monkeypatch) -> None:
    """WeCom may answer each add_contact_way with another URL: the conditional put keeps one."""
    from kefu import aws
    from kefu.store.links import LinkStore

    for key, value in (("AWS_ENDPOINT_URL", aws_endpoint), ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    for cached in (aws.client, aws.table, aws.dynamodb):
        cached.cache_clear()
    store, scene = LinkStore(stack.resources["StateTable"]), f"s{uuid.uuid4().hex[:8]}"
    gate, results = threading.Barrier(10), []

    def put(i: int) -> None:
        gate.wait()
        results.append(store.put_first(SALES, scene, f"https://work.weixin.qq.com/kf/kfc{i}?enc_scene=ENC{i}"))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert store.get(SALES, scene) == results[0]


def test_a_warm_function_answers_a_link_it_has_seen_from_memory(http, simulator, stack, clients) -> None:
    """One request after another reaches the same warm environment: once it has answered a scene,
    it answers it again without reading the table (here: even after the item is gone from it)."""
    first = links(http, scene="memory", scene_param="a")
    assert first.status_code == 200
    before = len(simulator.calls_to("kf/add_contact_way"))
    clients.dynamodb.delete_item(TableName=stack.resources["StateTable"],
                                 Key={"pk": {"S": f"link#{SALES}"}, "sk": {"S": "memory"}})
    again = links(http, scene="memory", scene_param="b")
    assert again.status_code == 200
    assert again.json()["url"] == first.json()["url"].replace("scene_param=a", "scene_param=b")
    assert len(simulator.calls_to("kf/add_contact_way")) == before


def test_json_answer_and_scene_param_round_trip_into_enter_session(http, simulator, stack) -> None:
    param = "campaign=双11&ref=a b/c?%"
    answer = links(http, scene="param", scene_param=param)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "public, max-age=600"
    body = answer.json()
    assert set(body) == {"url", "scene", "scene_param", "open_kfid", "corp_id"}
    assert (body["scene"], body["scene_param"], body["open_kfid"], body["corp_id"]) == (
        "param", param, SALES, simulator.corp_id)
    base = wecom_url(simulator, SALES, "param")
    assert body["url"] == f"{base}&scene_param={quote(param, safe='')}"
    assert parse_qs(urlsplit(body["url"]).query)["scene_param"] == [param]

    euid, _ = simulator.customer_enter_via_link(body["url"])
    enter = [m for m in simulator.messages(SALES)
             if m.get("event", {}).get("event_type") == "enter_session"
             and m["event"].get("external_userid") == euid]
    assert len(enter) == 1
    assert (enter[0]["event"]["scene"], enter[0]["event"]["scene_param"]) == ("param", param)


def test_no_scene_param_gives_wecoms_url_as_is(http, simulator) -> None:
    body = links(http, scene="home").json()
    assert body["scene_param"] == ""
    assert "scene_param" not in body["url"]
    assert body["url"] == wecom_url(simulator, SALES, "home")


def test_accounts_by_alias_and_open_kfid(http, simulator) -> None:
    by_alias = links(http, scene="alias", account="support").json()
    by_id = links(http, scene="alias", account=SUPPORT).json()
    default = links(http, scene="alias").json()
    assert by_alias == by_id and by_alias["open_kfid"] == SUPPORT
    assert default["open_kfid"] == SALES and default["url"] != by_alias["url"]
    stray = links(http, scene="stray", account=STRAY)  # the corp's, not configured: checked, then served
    assert stray.status_code == 200 and stray.json()["open_kfid"] == STRAY


def test_open_kfid_the_corp_does_not_have_is_404_without_asking_for_a_link(http, simulator) -> None:
    before = len(simulator.calls_to("kf/add_contact_way"))
    answer = links(http, scene="home", account="wkNOSUCHACCOUNT000000000000000099")
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_account"
    assert len(simulator.calls_to("kf/add_contact_way")) == before


def test_wecom_rejecting_the_account_is_404(http, simulator) -> None:
    simulator.inject_fault("kf/add_contact_way", errcode=95000)
    answer = links(http, scene="poster", account="support")
    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown_account", "message": answer.json()["message"]}
    assert links(http, scene="poster", account="support").status_code == 200  # nothing bad was stored


def test_wecom_busy_is_503_and_not_repeated(http, simulator) -> None:
    before = len(simulator.calls_to("kf/add_contact_way"))
    simulator.inject_fault("kf/add_contact_way", errcode=-1)
    answer = links(http, scene="poster", account=SALES)
    assert answer.status_code == 503 and answer.json()["error"] == "wecom_unavailable"
    assert len(simulator.calls_to("kf/add_contact_way")) == before + 1
    assert links(http, scene="poster", account=SALES).status_code == 200


INVALID = [
    ({}, 400, "invalid_scene"),
    ({"scene": ""}, 400, "invalid_scene"),
    ({"scene": "x" * 33}, 400, "invalid_scene"),
    ({"scene": "bad scene"}, 400, "invalid_scene"),
    ({"scene": "中文"}, 400, "invalid_scene"),
    ({"scene": "home", "scene_param": "x" * 129}, 400, "invalid_scene_param"),
    ({"scene": "home", "scene_param": "中" * 43}, 400, "invalid_scene_param"),
    ({"scene": "home", "format": "gif"}, 400, "invalid_format"),
    ({"scene": "home", "format": "svg", "size": "5000"}, 400, "invalid_size"),
    ({"scene": "home", "format": "png", "size": "big"}, 400, "invalid_size"),
    ({"scene": "home", "size": "63"}, 400, "invalid_size"),
    ({"scene": "unlisted"}, 403, "scene_not_allowed"),
    ({"scene": "brand_new_scene"}, 403, "scene_not_allowed"),
    ({"scene": "home", "account": "marketing"}, 404, "unknown_account"),
]


@pytest.mark.parametrize(("params", "status", "error"), INVALID)
def test_every_invalid_input_is_4xx_json_and_no_wecom_call(http, simulator, params, status, error) -> None:
    before = len(simulator.calls)
    answer = links(http, **params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error", "message"} and body["error"] == error
    named = {"invalid_scene": "scene", "invalid_scene_param": "scene_param", "invalid_format": "format",
             "invalid_size": "size", "scene_not_allowed": "scene", "unknown_account": "account"}[error]
    assert named in body["message"]
    assert "max-age" not in answer.headers.get("cache-control", "")
    assert len(simulator.calls) == before  # not even a token fetch


def test_repeated_parameters_are_rejected(http, simulator) -> None:
    answer = http.get("/links?scene=home&scene=poster")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scene"


@pytest.mark.parametrize("size", ["128", "300"])
def test_svg_decodes_to_the_json_url(http, size) -> None:
    url = links(http, scene="qr", scene_param="poster-7 中").json()["url"]
    answer = links(http, scene="qr", scene_param="poster-7 中", format="svg", size=size)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/svg+xml"
    assert "max-age=600" in answer.headers["cache-control"]
    assert answer.text.startswith(f'<svg width="{size}" height="{size}" ')
    assert decode_svg(answer.text) == [url]


def test_png_decodes_to_the_json_url(http) -> None:
    url = links(http, scene="qr", scene_param="png").json()["url"]
    answer = links(http, scene="qr", scene_param="png", format="png", size="512")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG")
    assert decode_png(answer.content) == [url]


def test_svg_is_segnos_rendering_of_the_url(http) -> None:
    import io

    import segno

    url = links(http, scene="qr").json()["url"]
    svg = links(http, scene="qr", format="svg", size="256").text
    expected = io.BytesIO()
    segno.make(url, error="m").save(expected, kind="svg", border=4, xmldecl=False, omitsize=True, light="#fff",
                                    svgclass=None, lineclass=None)
    assert svg == expected.getvalue().decode().replace(
        "<svg ", '<svg width="256" height="256" shape-rendering="crispEdges" ', 1)


# -- CORS --------------------------------------------------------------------------------------

def test_preflight_from_an_allowed_origin(http) -> None:
    answer = http.options("/links", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-max-age"] == "600"
    assert answer.content == b""


def test_preflight_from_another_origin_gets_no_cors_headers(http) -> None:
    answer = http.options("/links", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert answer.status_code == 204
    assert "access-control-allow-origin" not in answer.headers


def test_simple_requests_carry_cors_headers_only_for_allowed_origins(http) -> None:
    allowed = http.get("/links", params={"scene": "cors"}, headers={"Origin": "http://127.0.0.1:8000"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    assert "origin" in allowed.headers["vary"].lower()
    refused = http.get("/links", params={"scene": "cors"}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 200 and "access-control-allow-origin" not in refused.headers
    none = http.get("/links", params={"scene": "cors"})
    assert "access-control-allow-origin" not in none.headers
    error = http.get("/links", params={"scene": "nope"}, headers={"Origin": ORIGIN})
    assert error.status_code == 403  # browsers can read the reason too
    assert error.headers["access-control-allow-origin"] == ORIGIN


# -- funnel ------------------------------------------------------------------------------------

def test_each_issued_link_counts_toward_its_scene_and_day(http, stack, clients) -> None:
    for i in range(3):
        assert links(http, scene="funnel", scene_param=str(i)).status_code == 200
    assert links(http, scene="funnel", format="svg").status_code == 200
    assert links(http, scene="funnel", account="support").status_code == 200
    assert links(http, scene="funnel", size="1").status_code == 400  # refused: not counted
    from kefu.stats import day_of

    day = day_of(time.time(), "Asia/Shanghai")
    table = stack.resources["StateTable"]

    def issued(open_kfid: str) -> int:
        item = clients.dynamodb.get_item(TableName=table, Key={
            "pk": {"S": f"funnel#{day}"}, "sk": {"S": f"{open_kfid}#funnel"}}).get("Item")
        return int(item["links_issued"]["N"]) if item else 0

    assert issued(SALES) == 4
    assert issued(SUPPORT) == 1
