"""Everything the functions log during a full run (callback, sync, route) holds no secret, no
token and no message text."""

from __future__ import annotations

import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
SECRET_TEXT = "我的手机号是13800138000，密码 hunter2-XYZZY"


def test_logs_hold_no_secret_token_or_message_text(stack, simulator) -> None:
    open_kfid = simulator.add_account(name="hygiene")
    simulator.add_servicer(open_kfid, "alice")
    warm, _ = simulator.customer_enter(open_kfid)
    wait_for(lambda: any(c["open_kfid"] == open_kfid for c in simulator.sync_calls), message="first pull")
    euid, code = simulator.customer_enter(open_kfid, scene="hygiene", scene_param="p=1")
    simulator.customer_says(open_kfid, euid, SECRET_TEXT)
    media = simulator.customer_sends_media(open_kfid, euid, "image")
    wait_for(lambda: simulator.session(open_kfid, euid).get("service_state") == 3, message="assignment")
    simulator.end_session(open_kfid, euid, "alice")
    wait_for(lambda: any("session ended" in line for line in stack.lines), message="the end of session")
    output = stack.output()
    assert "route decision" in output and "account synced" in output  # the run really logged
    forbidden = {
        "corp secret": simulator.corp_secret,
        "callback token (WeCom Token)": simulator.token,
        "EncodingAESKey": simulator.encoding_aes_key,
        "message text": SECRET_TEXT,
        "message fragment": "hunter2-XYZZY",
        "welcome code": code or "",
        "media id": (simulator.item(media) or {}).get("image", {}).get("media_id", ""),
    }
    forbidden.update({f"access_token {i}": t for i, t in enumerate(simulator._tokens)})  # noqa: SLF001
    forbidden.update({f"callback Token {i}": t for i, t in enumerate(simulator._callback_tokens)})  # noqa: SLF001
    leaks = [name for name, value in forbidden.items() if value and value in output]
    assert leaks == []
