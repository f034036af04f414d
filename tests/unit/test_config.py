from __future__ import annotations

import subprocess
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from kefu import aws, secrets
from kefu.config import (
    CallbackSettings,
    ConfigError,
    LinksSettings,
    RouteSettings,
    Settings,
    SweepSettings,
    load,
    setting,
)
from kefu.secrets import load_callback_secrets

GOOD = {"WECOM_CORP_ID": "wwabc", "KEFU_STATE_TABLE": "kefu-state", "KEFU_SYNC_QUEUE_URL": "http://q"}


def test_loads_and_defaults() -> None:
    settings = load(CallbackSettings, GOOD)
    assert settings.corp_id == "wwabc"
    assert settings.secrets_prefix == "/kefu"
    assert settings.max_body_bytes == 65536
    assert settings.wecom_api_base == "https://qyapi.weixin.qq.com"


def test_missing_setting_is_named() -> None:
    env = {k: v for k, v in GOOD.items() if k != "KEFU_SYNC_QUEUE_URL"}
    with pytest.raises(ConfigError, match="KEFU_SYNC_QUEUE_URL"):
        load(CallbackSettings, env)


@pytest.mark.parametrize(("name", "value"), [("KEFU_SECRETS_PREFIX", "kefu/"), ("WECOM_API_BASE", "ftp://x"),
                                             ("KEFU_MAX_BODY_BYTES", "lots"), ("WECOM_CORP_ID", "")])
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(CallbackSettings, {**GOOD, name: value})


def test_base_settings_ignore_unrelated_variables() -> None:
    assert load(Settings, {**GOOD, "PATH": "/bin"}).state_table == "kefu-state"


def test_every_problem_is_named_in_one_error() -> None:
    env = {"WECOM_CORP_ID": "", "KEFU_STATE_TABLE": "ab", "KEFU_MAX_BODY_BYTES": "0", "KEFU_EVENT_CONTENT": "some"}
    with pytest.raises(ConfigError) as info:
        load(CallbackSettings, env)
    message = str(info.value)
    assert message.startswith("invalid configuration: ")
    for expected in ("WECOM_CORP_ID: must not be empty", "KEFU_STATE_TABLE: must be at least 3 characters",
                     "KEFU_SYNC_QUEUE_URL: required, not set", "KEFU_MAX_BODY_BYTES: must be greater than 0",
                     "KEFU_EVENT_CONTENT: must be one of: none, full"):
        assert expected in message


@pytest.mark.parametrize(("value", "parsed"), [("100", 100), (" 100 ", 100), ("+7", 7)])
def test_integers(value: str, parsed: int) -> None:
    assert load(CallbackSettings, {**GOOD, "KEFU_MAX_BODY_BYTES": value}).max_body_bytes == parsed


@pytest.mark.parametrize("value", ["1.5", "1e3", "", "0x10", "١٢"])
def test_not_integers(value: str) -> None:
    with pytest.raises(ConfigError, match="KEFU_MAX_BODY_BYTES: must be an integer"):
        load(CallbackSettings, {**GOOD, "KEFU_MAX_BODY_BYTES": value})


def test_numbers_and_bounds() -> None:
    env = {**GOOD, "KEFU_ROUTE_QUEUE_URL": "r", "KEFU_MEDIA_QUEUE_URL": "m"}
    assert load(SweepSettings, {**env, "KEFU_RESYNC_MINUTES": "0.5"}).resync_minutes == 0.5
    assert load(SweepSettings, env).reconcile_minutes == 60
    for bad, problem in (("-1", "must be at least 0"), ("1441", "must be at most 1440"), ("soon", "must be a number"),
                         ("nan", "must be a number"), ("inf", "must be a number")):
        with pytest.raises(ConfigError, match=f"KEFU_RESYNC_MINUTES: {problem}"):
            load(SweepSettings, {**env, "KEFU_RESYNC_MINUTES": bad})


def test_optional_strings_and_normalised_values() -> None:
    settings = load(RouteSettings, {**GOOD, "KEFU_MESSAGES_TABLE": "kefu-messages", "WECOM_API_BASE": "http://x:8/"})
    assert settings.routing_config is None and settings.routing_parameter is None
    assert settings.wecom_api_base == "http://x:8"
    assert settings.welcome_max_age_seconds == 20 and settings.event_content == "none"


def test_built_directly_by_environment_or_attribute_names() -> None:
    by_env = Settings(WECOM_CORP_ID="wwabc", KEFU_STATE_TABLE="kefu-state", WECOM_API_BASE="http://sim/")
    by_name = Settings(corp_id="wwabc", state_table="kefu-state", wecom_api_base="http://sim")
    assert by_env == by_name and hash(by_env) == hash(by_name)
    assert by_env.wecom_api_base == "http://sim"
    assert "corp_id='wwabc'" in repr(by_env)
    with pytest.raises(ConfigError, match="KEFU_STATE_TABLE"):
        Settings(corp_id="wwabc")


def test_settings_are_frozen() -> None:
    settings = load(CallbackSettings, GOOD)
    with pytest.raises(AttributeError):
        settings.corp_id = "other"  # type: ignore[misc]


def test_a_subclass_declares_its_own_settings() -> None:
    class Extra(Settings):
        table: str = setting("KEFU_EXTRA_TABLE", min_length=3)
        limit: int = setting("KEFU_EXTRA_LIMIT", default=5, ge=1, le=10)
        note: str | None = setting("KEFU_EXTRA_NOTE", default=None)

    settings = load(Extra, {**GOOD, "KEFU_EXTRA_TABLE": "tbl", "KEFU_EXTRA_LIMIT": "10"})
    assert (settings.table, settings.limit, settings.note, settings.corp_id) == ("tbl", 10, None, "wwabc")
    with pytest.raises(ConfigError, match="KEFU_EXTRA_LIMIT: must be at most 10"):
        load(Extra, {**GOOD, "KEFU_EXTRA_TABLE": "tbl", "KEFU_EXTRA_LIMIT": "11"})


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+8"])
def test_time_zones(zone: str) -> None:
    assert load(Settings, {**GOOD, "KEFU_STATS_TIMEZONE": zone}).stats_timezone == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "/etc/passwd", "../zoneinfo/UTC", "Asia//Shanghai", "Asia",
                                  "zone.tab"])
def test_bad_time_zones(zone: str) -> None:
    with pytest.raises(ConfigError, match="KEFU_STATS_TIMEZONE: must be an IANA time zone"):
        load(Settings, {**GOOD, "KEFU_STATS_TIMEZONE": zone})


def test_time_zones_agree_with_zoneinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for zone in ("Asia/Shanghai", "Europe/Berlin", "Asia/Nowhere"):
        try:
            zoneinfo.ZoneInfo(zone)
            known = True
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            known = False
        try:
            load(Settings, {**GOOD, "KEFU_STATS_TIMEZONE": zone})
            accepted = True
        except ConfigError:
            accepted = False
        assert accepted == known, zone
    # With no system zone files (as in a slim image) the tzdata package answers.
    monkeypatch.setenv("PYTHONTZPATH", str(tmp_path))
    pytest.importorskip("tzdata")
    assert load(Settings, {**GOOD, "KEFU_STATS_TIMEZONE": "Asia/Shanghai"}).stats_timezone == "Asia/Shanghai"


def test_links_lists_are_checked_and_spaces_dropped() -> None:
    settings = load(LinksSettings, {**GOOD, "KEFU_LINK_ACCOUNTS": "sales=wk1, wk2", "KEFU_LINK_SCENES": "a, b"})
    assert (settings.link_accounts, settings.link_scenes) == ("sales=wk1,wk2", "a,b")
    with pytest.raises(ConfigError, match="KEFU_LINK_ACCOUNTS: an alias appears twice"):
        load(LinksSettings, {**GOOD, "KEFU_LINK_ACCOUNTS": "a=wk1,a=wk2"})


def test_settings_import_no_pydantic() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared"
    code = ("import sys; import kefu.config, kefu.callback, kefu.secrets, kefu.observability; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'aws_lambda_powertools', 'defusedxml')))")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(shared)}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the WeCom secrets (kefu.secrets)

AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


class FakeSsm:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[dict[str, Any]] = []

    def get_parameters(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        names = kwargs["Names"]
        return {"Parameters": [{"Name": n, "Value": self.values[n], "Type": "SecureString"} for n in names if n in self.values],
                "InvalidParameters": [n for n in names if n not in self.values]}


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> FakeSsm:
    fake = FakeSsm({"/kefu/callback-token": "tok", "/kefu/encoding-aes-key": AES_KEY, "/kefu/corp-secret": "corp"})
    monkeypatch.setattr(aws, "client", lambda service: fake if service == "ssm" else pytest.fail(service))
    monkeypatch.setattr(secrets, "_cache", {})
    return fake


def test_callback_secrets_are_one_decrypted_read_of_two_parameters(ssm: FakeSsm) -> None:
    got = load_callback_secrets("/kefu")
    assert (got.callback_token, got.encoding_aes_key) == ("tok", AES_KEY)
    assert ssm.calls == [{"Names": ["/kefu/callback-token", "/kefu/encoding-aes-key"], "WithDecryption": True}]
    assert "tok" not in repr(got)


def test_secrets_are_kept_for_five_minutes(ssm: FakeSsm, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(secrets.time, "monotonic", lambda: now[0])
    first = secrets.load_callback_secrets("/kefu")
    now[0] += secrets.CACHE_SECONDS - 1
    assert secrets.load_callback_secrets("/kefu") is first and len(ssm.calls) == 1
    now[0] += 2
    assert secrets.load_callback_secrets("/kefu") is not first and len(ssm.calls) == 2
    assert secrets.load_secrets("/kefu").corp_secret == "corp" and len(ssm.calls) == 3


def test_missing_or_bad_secrets_fail_with_a_config_error_and_are_not_kept(ssm: FakeSsm) -> None:
    del ssm.values["/kefu/encoding-aes-key"]
    with pytest.raises(ConfigError, match="not found: /kefu/encoding-aes-key"):
        load_callback_secrets("/kefu")
    ssm.values["/kefu/encoding-aes-key"] = "short"
    with pytest.raises(ConfigError, match="encoding-aes-key must be 43 characters"):
        load_callback_secrets("/kefu")
    ssm.values["/kefu/encoding-aes-key"] = AES_KEY
    assert load_callback_secrets("/kefu").encoding_aes_key == AES_KEY


def test_an_ssm_error_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def get_parameters(self, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("AccessDenied")

    monkeypatch.setattr(aws, "client", lambda service: Failing())
    monkeypatch.setattr(secrets, "_cache", {})
    with pytest.raises(ConfigError, match="cannot read WeCom secrets under /kefu: RuntimeError: AccessDenied"):
        secrets.load_callback_secrets("/kefu")
