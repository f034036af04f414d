"""The rules behind GET /links, without AWS or HTTP: input checks, accounts, URLs, QR codes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from kefu.accounts import AccountDirectory
from kefu.config import ConfigError, LinksSettings, load
from kefu.links import (
    AccountRef,
    LinkConfig,
    LinkError,
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
        self.fail_counts = False
        self.race_winner: str | None = None  # another writer stores this just before our put
        self.quota: dict[str, int] = {}

    def get(self, open_kfid: str, scene: str) -> str | None:
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


def service(store: FakeStore, wecom: FakeWeCom, *accounts: tuple[str, bool], failed: list | None = None) -> LinkService:
    return LinkService(store, wecom, AccountDirectory(FakeList(*accounts)), clock=lambda: 86400 * 365,
                       on_count_failed=(failed.append if failed is not None else None))


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
