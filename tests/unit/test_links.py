"""The rules behind GET /links, without AWS or HTTP: input checks, accounts, URLs, QR codes."""

from __future__ import annotations

import json
import queue
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from kefu.accounts import AccountDirectory
from kefu.config import ConfigError, LinksSettings, load
from kefu.links import (
    AccountRef,
    LinkConfig,
    LinkError,
    LinkMemory,
    LinkService,
    parse_request,
    with_scene_param,
)
from kefu.qr import render_qr
from kefu.wecom.errors import WeComError
from tests.qrcodes import decode_png, decode_svg

SALES = "wkSALES0000000000000000000000001"
SUPPORT = "wkSUPPORT00000000000000000000002"
OTHER = "wkOTHER0000000000000000000000003"
CONFIG = LinkConfig.parse(accounts=f"sales={SALES},support={SUPPORT}", scenes="home,poster", qr_size=300)
OPEN = LinkConfig.parse()  # nothing configured
BASE = "https://work.weixin.qq.com/kf/kfc0123456789abcd?enc_scene=ENCABCDEF"


def reject(query: dict[str, str], config: LinkConfig = OPEN) -> LinkError:
    with pytest.raises(LinkError) as caught:
        parse_request(query, config)
    return caught.value


# -- input -------------------------------------------------------------------------------------

def test_a_valid_request_with_defaults() -> None:
    request = parse_request({"scene": "home"}, CONFIG)
    assert (request.scene, request.scene_param, request.format, request.size) == ("home", "", "json", 300)
    assert request.account == AccountRef(SALES, True)  # the first configured account


@pytest.mark.parametrize("scene", ["", "a" * 33, "has space", "dot.ted", "中文", "semi;colon", "a,b", "%41"])
def test_bad_scenes_are_400_naming_scene(scene: str) -> None:
    error = reject({"scene": scene} if scene else {})
    assert (error.status, error.error) == (400, "invalid_scene")
    assert "scene" in error.message and "32" in error.message


@pytest.mark.parametrize("scene", ["a", "A-z_09", "x" * 32])
def test_scene_limits(scene: str) -> None:
    assert parse_request({"scene": scene}, OPEN).scene == scene


def test_scene_param_is_counted_in_utf8_bytes_before_encoding() -> None:
    assert parse_request({"scene": "s", "scene_param": "é" * 64}, OPEN).scene_param == "é" * 64  # 128 bytes
    assert parse_request({"scene": "s", "scene_param": "&" * 128}, OPEN).scene_param == "&" * 128  # 384 encoded
    for too_long in ("x" * 129, "中" * 43, "é" * 64 + "x"):  # 129 bytes each; 43 and 65 characters
        error = reject({"scene": "s", "scene_param": too_long})
        assert (error.status, error.error) == (400, "invalid_scene_param")
        assert "128 bytes" in error.message


def test_unencodable_scene_param_is_400() -> None:
    assert reject({"scene": "s", "scene_param": "\ud800"}).error == "invalid_scene_param"


@pytest.mark.parametrize("fmt", ["JSON", "jpg", "svg,png", "html"])
def test_bad_format_is_400(fmt: str) -> None:
    assert (reject({"scene": "s", "format": fmt}).status, reject({"scene": "s", "format": fmt}).error) == (
        400, "invalid_format")


@pytest.mark.parametrize("size", ["63", "1025", "abc", "-100", "+100", "1e3", "２５６", "256.0", "256,256", "0"])
def test_bad_size_is_400_even_for_json(size: str) -> None:
    error = reject({"scene": "s", "size": size})
    assert (error.status, error.error) == (400, "invalid_size")
    assert "64" in error.message and "1024" in error.message


def test_size_limits() -> None:
    assert parse_request({"scene": "s", "format": "png", "size": "64"}, OPEN).size == 64
    assert parse_request({"scene": "s", "format": "svg", "size": "1024"}, OPEN).size == 1024


def test_scene_outside_the_allow_list_is_403_and_only_after_its_syntax() -> None:
    error = reject({"scene": "banner"}, CONFIG)
    assert (error.status, error.error) == (403, "scene_not_allowed")
    assert reject({"scene": "bad scene"}, CONFIG).status == 400


def test_unknown_parameters_are_ignored() -> None:
    assert parse_request({"scene": "home", "utm_source": "x", "_": "123"}, CONFIG).scene == "home"


# -- accounts ----------------------------------------------------------------------------------

def test_accounts_resolve_by_alias_configured_id_or_raw_open_kfid() -> None:
    assert parse_request({"scene": "home", "account": "support"}, CONFIG).account == AccountRef(SUPPORT, True)
    assert parse_request({"scene": "home", "account": SUPPORT}, CONFIG).account == AccountRef(SUPPORT, True)
    assert parse_request({"scene": "home", "account": OTHER}, CONFIG).account == AccountRef(OTHER, False)
    assert parse_request({"scene": "home"}, OPEN).account == AccountRef(None, False)


@pytest.mark.parametrize("account", ["marketing", "wk", "wk12", "wk" + "x" * 63, "WKABCDEFGH", "wk abcdefgh"])
def test_unknown_alias_that_is_no_open_kfid_is_404(account: str) -> None:
    error = reject({"scene": "home", "account": account}, CONFIG)
    assert (error.status, error.error) == (404, "unknown_account")
    assert "sales" in error.message and "support" in error.message


def test_config_parsing() -> None:
    config = LinkConfig.parse(accounts=f"{OTHER},sales={SALES}", scenes="a,b", origins="http://127.0.0.1:8000,*")
    assert config.accounts == (OTHER, SALES) and config.default_account == OTHER
    assert config.aliases == {"sales": SALES}
    assert config.scenes == frozenset({"a", "b"})
    assert config.origins == ("http://127.0.0.1:8000", "*")
    assert OPEN.scenes is None and OPEN.default_account is None and OPEN.origins == ()
    with pytest.raises(ConfigError, match="KEFU_LINK_ACCOUNTS"):
        LinkConfig.parse(accounts="sales=notanid")


ENV = {"WECOM_CORP_ID": "ww1", "KEFU_STATE_TABLE": "kefu-state"}


@pytest.mark.parametrize(("name", "value"), [
    ("KEFU_LINK_ACCOUNTS", "sales=wk1=wk2"), ("KEFU_LINK_ACCOUNTS", f"a={SALES},a={SUPPORT}"),
    ("KEFU_LINK_SCENES", "ok,not ok!"), ("KEFU_LINK_SCENES", "a" * 33),
    ("KEFU_LINK_CORS_ORIGINS", "https://shop.example.com/"), ("KEFU_LINK_CORS_ORIGINS", "shop.example.com"),
    ("KEFU_LINK_QR_SIZE", "10"), ("KEFU_LINK_CACHE_SECONDS", "-1"),
])
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(LinksSettings, {**ENV, name: value})


def test_settings_defaults() -> None:
    settings = load(LinksSettings, ENV)
    config = LinkConfig.from_settings(settings)
    assert (config.qr_size, config.cache_seconds, config.scenes, config.origins) == (256, 3600, None, ())


class FakeList:
    def __init__(self, *accounts: tuple[str, bool]) -> None:
        self.accounts = [{"open_kfid": k, "name": k, "manage_privilege": m} for k, m in accounts]
        self.calls = 0

    def __call__(self) -> list[dict]:
        self.calls += 1
        return list(self.accounts)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_account_is_the_one_the_app_manages() -> None:
    fetch = FakeList((SALES, True), (OTHER, False))
    directory = AccountDirectory(fetch)
    assert directory.default() == SALES
    assert directory.default() == SALES
    assert fetch.calls == 1  # cached


@pytest.mark.parametrize("accounts", [(), ((SALES, True), (SUPPORT, True))])
def test_no_default_when_zero_or_several_accounts(accounts) -> None:
    with pytest.raises(LinkError) as caught:
        AccountDirectory(FakeList(*accounts)).default()
    assert (caught.value.status, caught.value.error) == (404, "no_default_account")
    assert "LinkAccounts" in caught.value.message


def test_directory_refreshes_on_miss_at_most_once_per_interval_and_after_ttl() -> None:
    clock, fetch = Clock(), FakeList((SALES, True))
    directory = AccountDirectory(fetch, ttl=600, miss_interval=60, clock=clock)
    assert directory.knows(SALES) and fetch.calls == 1
    assert not directory.knows(OTHER) and fetch.calls == 1  # just listed: no second call
    clock.now += 61
    fetch.accounts.append({"open_kfid": OTHER, "manage_privilege": True})
    assert directory.knows(OTHER) and fetch.calls == 2  # a miss past the interval lists again
    for _ in range(5):
        directory.knows(SUPPORT)
    assert fetch.calls == 2
    clock.now += 600
    directory.knows(SALES)
    assert fetch.calls == 3  # past the TTL


# -- URLs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["a b", "a&b=c", "100%", "x+y", "中文/?#", "é" * 64, "&" * 128])
def test_scene_param_is_percent_encoded_and_comes_back_decoded(param: str) -> None:
    url = with_scene_param(BASE, param)
    assert url.startswith(BASE + "&scene_param=")
    tail = url[len(BASE + "&scene_param="):]
    assert all(c.isalnum() or c in "%-._~" for c in tail)
    assert parse_qs(urlsplit(url).query)["scene_param"] == [param]


def test_no_scene_param_leaves_the_url_alone() -> None:
    assert with_scene_param(BASE, "") == BASE
    assert with_scene_param("https://x.test/kf/abc", "p") == "https://x.test/kf/abc?scene_param=p"


# -- issuing -----------------------------------------------------------------------------------

class FakeStore:
    def __init__(self) -> None:
        self.links: dict[tuple[str, str], str] = {}
        self.counts: dict[tuple[str, str, str], int] = {}
        self.writes = 0  # count_issued calls
        self.reads = 0
        self.fail_counts = False
        self.race_winner: str | None = None  # another writer stores this just before our put
        self.quota: dict[str, int] = {}

    def get(self, open_kfid: str, scene: str) -> str | None:
        self.reads += 1
        return self.links.get((open_kfid, scene))

    def put_first(self, open_kfid: str, scene: str, url: str) -> str:
        if self.race_winner is not None:
            self.links.setdefault((open_kfid, scene), self.race_winner)
        return self.links.setdefault((open_kfid, scene), url)

    def take_new_link(self, day: str, limit: int) -> bool:
        taken = self.quota.get(day, 0)
        if taken >= limit:
            return False
        self.quota[day] = taken + 1
        return True

    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None:
        self.writes += 1
        if self.fail_counts:
            raise RuntimeError("throttled")
        key = (open_kfid, scene, day)
        self.counts[key] = self.counts.get(key, 0) + count


class FakeWeCom:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error: WeComError | None = None

    def __call__(self, open_kfid: str, scene: str) -> str:
        self.calls.append((open_kfid, scene))
        if self.error is not None:
            raise self.error
        return f"https://work.weixin.qq.com/kf/kfc{open_kfid[-4:]}?enc_scene=ENC{scene.upper()}{len(self.calls)}"


def service(store: FakeStore, wecom: FakeWeCom, *accounts: tuple[str, bool], failed: list | None = None,
            memory: LinkMemory | None = None, defer_counts: bool = False) -> LinkService:
    return LinkService(store, wecom, AccountDirectory(FakeList(*accounts)), clock=lambda: 86400 * 365,
                       on_count_failed=(failed.append if failed is not None else None), memory=memory,
                       defer_counts=defer_counts)


def test_one_add_contact_way_per_account_and_scene_and_every_link_counted() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    links = service(store, wecom)
    first = links.issue(parse_request({"scene": "home", "scene_param": "a"}, CONFIG))
    again = [links.issue(parse_request({"scene": "home", "scene_param": f"p{i}"}, CONFIG)) for i in range(5)]
    other = links.issue(parse_request({"scene": "home", "account": "support"}, CONFIG))
    assert wecom.calls == [(SALES, "home"), (SUPPORT, "home")]
    assert first.created and not any(link.created for link in again)
    assert {link.base_url for link in again} == {first.base_url}
    assert again[2].url == first.base_url + "&scene_param=p2"
    assert other.open_kfid == SUPPORT and other.base_url != first.base_url
    assert store.counts == {(SALES, "home", "1971-01-01"): 6, (SUPPORT, "home", "1971-01-01"): 1}
    assert first.body("ww1") == {"url": first.url, "scene": "home", "scene_param": "a", "open_kfid": SALES,
                                 "corp_id": "ww1"}


def test_the_race_loser_answers_the_stored_url() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    store.race_winner = "https://work.weixin.qq.com/kf/kfcWIN?enc_scene=ENCWIN"
    link = service(store, wecom).issue(parse_request({"scene": "home", "scene_param": "x"}, CONFIG))
    assert link.url == store.race_winner + "&scene_param=x"


@pytest.mark.parametrize(("errcode", "http_status", "status", "error"), [
    (95000, None, 404, "unknown_account"), (95004, None, 404, "unknown_account"),
    (-1, None, 503, "wecom_unavailable"), (45009, None, 503, "wecom_unavailable"),
    (None, None, 503, "wecom_unavailable"), (None, 502, 503, "wecom_unavailable"),
    (48002, None, 502, "wecom_error"), (60020, None, 502, "wecom_error"),
])
def test_wecom_failures_become_answers_and_store_nothing(errcode, http_status, status, error) -> None:
    store, wecom = FakeStore(), FakeWeCom()
    wecom.error = WeComError("kf/add_contact_way", errcode, "x", http_status)
    with pytest.raises(LinkError) as caught:
        service(store, wecom).issue(parse_request({"scene": "home"}, CONFIG))
    assert (caught.value.status, caught.value.error) == (status, error)
    assert store.links == {} and store.counts == {}


def test_raw_open_kfid_is_checked_against_the_account_list_before_asking_for_a_link() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    links = service(store, wecom, (SALES, True), (OTHER, False))
    assert links.issue(parse_request({"scene": "home", "account": OTHER}, OPEN)).open_kfid == OTHER
    with pytest.raises(LinkError) as caught:
        links.issue(parse_request({"scene": "home", "account": SUPPORT}, OPEN))
    assert (caught.value.status, caught.value.error) == (404, "unknown_account")
    assert wecom.calls == [(OTHER, "home")]


def test_default_account_is_discovered_when_none_is_configured() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    link = service(store, wecom, (OTHER, True)).issue(parse_request({"scene": "home"}, OPEN))
    assert link.open_kfid == OTHER and wecom.calls == [(OTHER, "home")]


def test_a_failed_count_does_not_fail_the_link() -> None:
    store, wecom, failed = FakeStore(), FakeWeCom(), []
    store.fail_counts = True
    link = service(store, wecom, failed=failed).issue(parse_request({"scene": "home"}, CONFIG))
    assert link.url.startswith("https://") and not link.counted
    assert len(failed) == 1


# -- memory and deferred counts -----------------------------------------------------------------

def test_memory_keeps_the_most_recently_used_links_up_to_its_bound() -> None:
    memory = LinkMemory(max_entries=2, max_age=300, clock=Clock())
    memory.put(SALES, "a", "https://a")
    memory.put(SALES, "b", "https://b")
    assert memory.get(SALES, "a") == "https://a"  # now the most recently used
    memory.put(SALES, "c", "https://c")
    assert len(memory) == 2
    assert (memory.get(SALES, "a"), memory.get(SALES, "b"), memory.get(SALES, "c")) == ("https://a", None, "https://c")
    assert memory.get(SUPPORT, "a") is None  # per account
    off = LinkMemory(max_entries=0)
    off.put(SALES, "a", "https://a")
    assert off.get(SALES, "a") is None and len(off) == 0


def test_memory_forgets_an_entry_after_its_age() -> None:
    clock = Clock()
    memory = LinkMemory(max_entries=10, max_age=300, clock=clock)
    memory.put(SALES, "a", "https://a")
    clock.now += 299
    assert memory.get(SALES, "a") == "https://a"  # using it does not make it younger
    clock.now += 1
    assert memory.get(SALES, "a") is None and len(memory) == 0


def test_a_remembered_link_is_answered_without_reading_the_table_and_still_counted() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    links = service(store, wecom, memory=LinkMemory())
    first = links.issue(parse_request({"scene": "home", "scene_param": "a"}, CONFIG))
    reads = store.reads
    again = [links.issue(parse_request({"scene": "home", "scene_param": f"p{i}"}, CONFIG)) for i in range(5)]
    assert store.reads == reads  # from memory
    assert {link.base_url for link in again} == {first.base_url} and not any(link.created for link in again)
    assert again[3].url == first.base_url + "&scene_param=p3"
    assert wecom.calls == [(SALES, "home")]
    assert store.counts == {(SALES, "home", "1971-01-01"): 6} and store.writes == 6  # one write per link


def test_a_link_stored_by_another_container_is_read_once_then_remembered() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    store.links[(SALES, "home")] = BASE
    links = service(store, wecom, memory=LinkMemory())
    assert [links.issue(parse_request({"scene": "home"}, CONFIG)).url for _ in range(3)] == [BASE] * 3
    assert store.reads == 1 and wecom.calls == []


def test_refusals_and_wecom_failures_are_not_remembered() -> None:
    store, wecom, memory = FakeStore(), FakeWeCom(), LinkMemory()
    links = service(store, wecom, (SALES, True), memory=memory)
    with pytest.raises(LinkError):
        links.issue(parse_request({"scene": "home", "account": SUPPORT}, OPEN))  # not the corp's
    wecom.error = WeComError("kf/add_contact_way", -1, "busy", None)
    with pytest.raises(LinkError):
        links.issue(parse_request({"scene": "home"}, CONFIG))
    assert len(memory) == 0 and store.links == {} and store.counts == {}
    wecom.error = None
    assert links.issue(parse_request({"scene": "home"}, CONFIG)).created  # asked again, then made


def test_a_link_item_deleted_by_hand_is_followed_once_the_memory_entry_is_old() -> None:
    store, wecom, clock = FakeStore(), FakeWeCom(), Clock()
    links = service(store, wecom, memory=LinkMemory(max_age=300, clock=clock))
    first = links.issue(parse_request({"scene": "home"}, CONFIG))
    del store.links[(SALES, "home")]  # an operator removes the item
    assert links.issue(parse_request({"scene": "home"}, CONFIG)).url == first.url  # remembered
    clock.now += 300
    renewed = links.issue(parse_request({"scene": "home"}, CONFIG))
    assert renewed.created and renewed.url != first.url and store.links[(SALES, "home")] == renewed.url


def test_deferred_counts_are_written_by_flush_one_write_per_account_scene_and_day() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    links = service(store, wecom, memory=LinkMemory(), defer_counts=True)
    issued = [links.issue(parse_request({"scene": s}, CONFIG)) for s in ("home", "home", "poster", "home")]
    issued.append(links.issue(parse_request({"scene": "home", "account": "support"}, CONFIG)))
    assert all(link.counted for link in issued) and store.counts == {} and store.writes == 0
    assert links.flush_counts() == 0
    assert store.counts == {(SALES, "home", "1971-01-01"): 3, (SALES, "poster", "1971-01-01"): 1,
                            (SUPPORT, "home", "1971-01-01"): 1}
    assert store.writes == 3
    assert links.flush_counts() == 0 and store.writes == 3  # nothing pending: no write
    links.issue(parse_request({"scene": "home"}, CONFIG))
    links.flush_counts()
    assert store.counts[(SALES, "home", "1971-01-01")] == 4 and store.writes == 4


def test_a_failed_deferred_count_is_reported_and_does_not_stay_pending() -> None:
    store, wecom, failed = FakeStore(), FakeWeCom(), []
    links = service(store, wecom, failed=failed, defer_counts=True)
    links.issue(parse_request({"scene": "home"}, CONFIG))
    store.fail_counts = True
    assert links.flush_counts() == 1 and len(failed) == 1
    store.fail_counts = False
    assert links.flush_counts() == 0 and store.counts == {}  # lost, as a failed count always was


@pytest.mark.filterwarnings("ignore::UserWarning")  # Powertools: a refusal's metric goes out on its own
def test_bad_input_changes_nothing_with_memory_and_deferred_counts(monkeypatch) -> None:
    from tests.unit.lambda_env import LambdaContext, http_event, load_function

    module = load_function("links", monkeypatch, KEFU_LINK_ACCOUNTS=f"sales={SALES}", KEFU_LINK_SCENES="home")
    store, wecom = FakeStore(), FakeWeCom()
    module.service = service(store, wecom, memory=LinkMemory(), defer_counts=True)
    for query, status in (({"scene": "a b"}, 400), ({"scene": "home", "size": "9"}, 400),
                          ({"scene": "other"}, 403), ({"scene": "home", "account": "nobody"}, 404)):
        answer = module.handler(http_event("GET", "/links", query), LambdaContext())
        assert answer["statusCode"] == status and set(json.loads(answer["body"])) == {"error", "message"}
    assert store.links == {} and store.counts == {} and store.reads == 0 and wecom.calls == []
    ok = module.handler(http_event("GET", "/links", {"scene": "home"}), LambdaContext())
    assert ok["statusCode"] == 200 and store.counts == {(SALES, "home", "1971-01-01"): 1}  # counted before answering


# -- counting after the answer (the internal Lambda extension) ---------------------------------

class FakeExtensionsApi:
    """Lambda's Extensions API in memory, as AfterAnswer calls it (its _call)."""

    def __init__(self) -> None:
        self.registered: list[tuple[dict, dict]] = []
        self.events: queue.Queue = queue.Queue()
        self.asked: queue.Queue = queue.Queue()  # one entry per event/next
        self.closed = False

    def call(self, method: str, path: str, headers: dict, body: str | None = None, timeout=None):
        if path == "register":
            self.registered.append((headers, json.loads(body or "{}")))
            return {}, {"Lambda-Extension-Identifier": "ext-1"}
        assert (method, path, headers) == ("GET", "event/next", {"Lambda-Extension-Identifier": "ext-1"})
        self.asked.put(time.monotonic())
        event = self.events.get()
        if event is None:
            raise ConnectionError("closed")
        return event, {}

    def invoke(self, request_id: str, seconds: float = 10) -> None:
        self.events.put({"eventType": "INVOKE", "requestId": request_id,
                         "deadlineMs": int((time.time() + seconds) * 1000)})

    def next_asked(self) -> None:
        self.asked.get(timeout=5)

    def idle(self) -> bool:
        return not self.asked.empty()


class SlowCounts(FakeStore):
    """Counting waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None:
        assert self.release.wait(5)
        super().count_issued(open_kfid, scene, day, count)


@pytest.fixture
def extension(monkeypatch):
    from tests.unit.lambda_env import load_function

    module = load_function("links", monkeypatch, KEFU_LINK_ACCOUNTS=f"sales={SALES}")
    assert module.after_answer is None  # no AWS_LAMBDA_RUNTIME_API: the handler counts before answering
    api = FakeExtensionsApi()
    monkeypatch.setattr(module.AfterAnswer, "_call", api.call)
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    started = module.AfterAnswer.start(module._count_after_answer)
    assert started is not None
    module.after_answer = started
    api.next_asked()  # the extension is ready: Lambda's init may end
    yield module, api
    started.stop()
    api.events.put(None)


def test_the_extension_registers_for_invoke_events_only(extension) -> None:
    _, api = extension
    [(headers, body)] = api.registered
    assert body == {"events": ["INVOKE"]} and headers["Lambda-Extension-Name"]


def test_the_answer_goes_out_before_the_count_and_the_invocation_ends_after_it(extension) -> None:
    from tests.unit.lambda_env import LambdaContext, http_event

    module, api = extension
    store, wecom = SlowCounts(), FakeWeCom()
    module.service = service(store, wecom, memory=LinkMemory(), defer_counts=True)
    api.invoke("req-1")
    answer = module.handler(http_event("GET", "/links", {"scene": "home"}), LambdaContext(aws_request_id="req-1"))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["open_kfid"] == SALES
    time.sleep(0.05)
    assert store.counts == {} and not api.idle()  # answered; the count is being written, the invocation goes on
    store.release.set()
    api.next_asked()  # the extension asks for its next event only now
    assert store.counts == {(SALES, "home", "1971-01-01"): 1} and store.writes == 1
    for n in (2, 3):
        api.invoke(f"req-{n}")
        module.handler(http_event("GET", "/links", {"scene": "home"}), LambdaContext(aws_request_id=f"req-{n}"))
        api.next_asked()
        assert store.counts == {(SALES, "home", "1971-01-01"): n} and store.writes == n  # one write each


def test_without_the_handlers_word_the_extension_counts_before_the_deadline(extension) -> None:
    module, api = extension
    store, wecom = FakeStore(), FakeWeCom()
    module.service = service(store, wecom, defer_counts=True)
    module.service.issue(parse_request({"scene": "home"}, CONFIG))  # as if a handler were still running
    started = time.monotonic()
    api.invoke("req-stuck", seconds=module.AfterAnswer.MARGIN + 0.3)
    api.next_asked()
    assert 0.1 < time.monotonic() - started < 2 and store.counts == {(SALES, "home", "1971-01-01"): 1}


def test_a_failed_registration_leaves_counting_to_the_handler(monkeypatch) -> None:
    from tests.unit.lambda_env import load_function

    module = load_function("links", monkeypatch)

    def refuse(self, method, path, headers, body=None, timeout=None):
        raise ConnectionRefusedError("no runtime API")

    monkeypatch.setattr(module.AfterAnswer, "_call", refuse)
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
    assert module.AfterAnswer.start(module._count_after_answer) is None


# -- QR codes ----------------------------------------------------------------------------------

LONG = with_scene_param(BASE, "中" * 42)  # the longest scene_param WeCom allows, encoded: ~420 characters


@pytest.mark.parametrize("url", [BASE, LONG])
def test_svg_decodes_to_the_url_at_the_asked_size(url: str) -> None:
    svg = render_qr(url, "svg", 320).decode()
    assert svg.startswith('<svg width="320" height="320" ')
    assert decode_svg(svg) == [url]


@pytest.mark.parametrize(("url", "size"), [(BASE, 256), (LONG, 256), (BASE, 64), (LONG, 1024), (LONG, 100)])
def test_png_decodes_to_the_url_and_fits_the_size(url: str, size: int) -> None:
    import io

    import png
    import segno

    data = render_qr(url, "png", size)
    width, height, _, _ = png.Reader(file=io.BytesIO(data)).read()
    modules = segno.make(url, error="m").symbol_size(scale=1, border=4)[0]
    assert width == height == modules * (size // modules)  # whole pixels per module, as many as fit
    assert decode_png(data) == [url]


# -- the published contract --------------------------------------------------------------------

def test_openapi_document_is_valid_and_matches_the_code() -> None:
    from pathlib import Path

    import yaml

    from kefu import ids, links, qr

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    import openapi_spec_validator  # requirements-dev.txt: the contract is validated, never skipped

    openapi_spec_validator.validate(doc)
    get = doc["paths"]["/links"]["get"]
    params = {p["name"]: p["schema"] for p in get["parameters"]}
    assert params["format"]["enum"] == list(links.FORMATS)
    assert (params["size"]["minimum"], params["size"]["maximum"]) == (qr.QR_MIN_SIZE, qr.QR_MAX_SIZE)
    assert params["scene_param"]["maxLength"] == ids.SCENE_PARAM_MAX_BYTES
    assert params["scene"]["pattern"] == f"^[0-9A-Za-z_-]{{1,{ids.SCENE_MAX_BYTES}}}$"
    assert set(get["responses"]["200"]["content"]) == set(links.FORMATS.values())
    issued = links.IssuedLink("u", "u", SALES, "s", "", created=False, counted=True)
    assert doc["components"]["schemas"]["Link"]["required"] == list(issued.body("ww"))
    assert "options" in doc["paths"]["/links"]


def test_new_links_past_the_daily_cap_are_refused_and_made_links_are_still_served() -> None:
    store, wecom = FakeStore(), FakeWeCom()
    links = LinkService(store, wecom, AccountDirectory(FakeList()), clock=lambda: 86400 * 365, daily_new_limit=2)
    made = [links.issue(parse_request({"scene": s}, CONFIG)) for s in ("home", "poster")]
    with pytest.raises(LinkError) as caught:
        links.issue(parse_request({"scene": "home", "account": "support"}, CONFIG))  # a third new pair
    assert (caught.value.status, caught.value.error) == (429, "too_many_new_links")
    assert wecom.calls == [(SALES, "home"), (SALES, "poster")]  # WeCom was not asked for the third
    assert links.issue(parse_request({"scene": "home", "scene_param": "x"}, CONFIG)).base_url == made[0].base_url
