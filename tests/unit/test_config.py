from __future__ import annotations

import pytest

from kefu.config import CallbackSettings, ConfigError, Settings, load

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
