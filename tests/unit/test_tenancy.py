"""Provider mode's tenancy (kefu.tenancy): every key, index value, queue message and record of a corp
is qualified with it, nothing can be built outside a corp's scope, and single mode changes nothing."""

from __future__ import annotations

import inspect
import json
import time

import pytest

from kefu import tenancy
from kefu.callback import CANCEL_AUTH, CREATE_AUTH, SUITE_TICKET, CallbackRejected, CallbackUnverified, read_command, read_event
from kefu.crypto import CryptoError, WXBizMsgCrypt
from kefu.queues import QueueMessage, for_corp
from kefu.store import keys
from kefu.store.messages import kefu_record, shown, stored

A, B = "wwcorpa0000000001", "wwcorpb0000000002"
SUITE = "wwsuite0000000001"
TOKEN, AES_KEY = "SuiteToken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture()
def provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tenancy.MODE_ENV, tenancy.PROVIDER)


def _key_builders() -> list[tuple[str, object]]:
    """Every function of kefu.store.keys that builds a corp's key (not the provider's own)."""
    provider_own = {"suite_ticket", "suite_token", "tenant", "corp_api_key", "pool_sort_key", "session_customer"}
    return [(name, fn) for name, fn in inspect.getmembers(keys, inspect.isfunction)
            if fn.__module__ == keys.__name__ and name not in provider_own]


def _call(fn: object) -> object:
    params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    return fn(*["x" for p in params.values() if p.default is inspect.Parameter.empty])  # type: ignore[operator]


def _values(built: object) -> list[str]:
    return list(built.values()) if isinstance(built, dict) else [str(built)]


def test_single_mode_keys_are_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tenancy.MODE_ENV, raising=False)
    assert keys.cursor("wk1") == {"pk": "cursor#wk1", "sk": "cursor"}
    assert keys.session("wk1", "wm1") == {"pk": "rsession#wk1#wm1", "sk": "s"}
    assert keys.conversation("wk1", "wm1") == "wk1#wm1"
    assert keys.message("m1") == {"msgid": "m1"}
    assert keys.indexed("u1") == "u1"
    record = kefu_record("wk1", "wm1", "m1", {"msgtype": "text", "text": {"content": "hi"}}, 1, rule="r", cause="c",
                         via="send_msg")
    assert stored(record) is record and shown(record) is record
    message = QueueMessage('{"a":1}', "wk1", "d")
    assert for_corp(message) is message


@pytest.mark.parametrize(("name", "fn"), _key_builders())
def test_every_corp_key_is_qualified_and_none_is_built_outside_a_corp(provider: None, name: str, fn: object) -> None:
    with pytest.raises(tenancy.TenancyError):
        _call(fn)
    with tenancy.serving(A):
        built = _call(fn)
    qualified = [v for v in _values(built) if v.startswith(f"{A}/")]
    assert qualified, (name, built)  # its pk (or the value itself) is the corp's


def test_the_providers_own_keys_are_never_qualified(provider: None) -> None:
    assert keys.tenant(A) == {"pk": "provider#corps", "sk": A}
    assert keys.suite_ticket()["pk"] == "provider#suite"
    assert keys.suite_token("k")["pk"] == "provider#token#k"


def test_another_corps_value_is_never_taken_for_this_corps(provider: None) -> None:
    with tenancy.serving(B):
        theirs = keys.conversation("wk1", "wm1")
    with tenancy.serving(A):
        assert tenancy.unqualify(keys.conversation("wk1", "wm1")) == "wk1#wm1"
        with pytest.raises(tenancy.TenancyError):
            tenancy.unqualify(theirs)
        with pytest.raises(tenancy.TenancyError):
            shown({"msgid": f"{B}/m1", "conv": theirs})


def test_a_corp_id_is_checked() -> None:
    for bad in ("", "a/b", "a#b", "x" * 65, "中文"):
        with pytest.raises(ValueError):
            with tenancy.serving(bad):
                pass


def test_records_and_queue_messages_carry_their_corp(provider: None) -> None:
    with tenancy.serving(A):
        record = kefu_record("wk1", "wm1", "m1", {"msgtype": "text", "text": {"content": "hi"}}, 1, rule="r",
                             cause="c", via="send_msg")
        kept = stored(record)
        assert (kept["msgid"], kept["conv"], kept["corp"]) == (f"{A}/m1", f"{A}/wk1#wm1", A)
        assert shown(kept)["msgid"] == "m1" and shown(kept)["conv"] == "wk1#wm1" and "corp" not in shown(kept)
        a_message = for_corp(QueueMessage('{"open_kfid":"wk1"}', "wk1", "d"))
    with tenancy.serving(B):
        b_message = for_corp(QueueMessage('{"open_kfid":"wk1"}', "wk1", "d"))
    assert json.loads(a_message.body) == {"open_kfid": "wk1", "corp": A}
    assert (a_message.group_id, b_message.group_id) == (f"{A}/wk1", f"{B}/wk1")
    assert a_message.deduplication_id != b_message.deduplication_id


# --------------------------------------------------------------------------- the suite's callbacks


def _signed(crypt: WXBizMsgCrypt, xml: str, to: str) -> tuple[dict[str, str], bytes]:
    encrypted = crypt.encrypt(xml)
    ts, nonce = str(int(time.time())), "12345"
    query = {"msg_signature": crypt.sign(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
    return query, f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()


def _command(fields: dict[str, str], suite: str = SUITE) -> tuple[dict[str, str], bytes]:
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return _signed(WXBizMsgCrypt(TOKEN, AES_KEY, suite), f"<xml><SuiteId><![CDATA[{suite}]]></SuiteId>{inner}</xml>", suite)


def test_suite_commands_are_read_with_the_fields_each_kind_needs() -> None:
    crypt = WXBizMsgCrypt(TOKEN, AES_KEY, SUITE)
    query, body = _command({"InfoType": SUITE_TICKET, "TimeStamp": "1700000000", "SuiteTicket": "t1"})
    command = read_command(crypt, query, body, 65536, SUITE)
    assert (command.info_type, command.suite_ticket, command.timestamp) == (SUITE_TICKET, "t1", 1700000000)
    query, body = _command({"InfoType": CREATE_AUTH, "TimeStamp": "1", "AuthCode": "code", "State": "s"})
    assert read_command(crypt, query, body, 65536, SUITE).auth_code == "code"
    query, body = _command({"InfoType": CANCEL_AUTH, "TimeStamp": "1", "AuthCorpId": A})
    assert read_command(crypt, query, body, 65536, SUITE).auth_corp_id == A
    for fields in ({"InfoType": SUITE_TICKET, "TimeStamp": "1"}, {"InfoType": CREATE_AUTH, "TimeStamp": "1"},
                   {"InfoType": CANCEL_AUTH, "TimeStamp": "x", "AuthCorpId": A}):
        query, body = _command(fields)
        with pytest.raises(CallbackRejected) as refused:
            read_command(crypt, query, body, 65536, SUITE)
        assert refused.value.status == 400


def test_a_command_for_another_suite_is_refused() -> None:
    query, body = _command({"InfoType": SUITE_TICKET, "TimeStamp": "1", "SuiteTicket": "t"}, suite="wwothersuite00001")
    with pytest.raises(CallbackUnverified):
        read_command(WXBizMsgCrypt(TOKEN, AES_KEY, SUITE), query, body, 65536, SUITE)


def _event(corp: str, to: str) -> tuple[dict[str, str], bytes]:
    xml = (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]>"
           "</MsgType><Event><![CDATA[kf_msg_or_event]]></Event><OpenKfId><![CDATA[wk1]]></OpenKfId></xml>")
    return _signed(WXBizMsgCrypt(TOKEN, AES_KEY, corp), xml, to)


def test_a_data_callback_is_taken_only_for_a_served_corp_and_only_as_that_corp() -> None:
    crypt = WXBizMsgCrypt(TOKEN, AES_KEY, SUITE)
    served = {A}.__contains__
    query, body = _event(A, A)
    assert read_event(crypt, query, body, 65536, accept=served).to_user_name == A
    query, body = _event(B, B)  # a corp that is not served
    with pytest.raises(CallbackUnverified):
        read_event(crypt, query, body, 65536, accept=served)
    query, body = _event(A, B)  # encrypted for A, claiming to be B's
    with pytest.raises(CallbackUnverified):
        read_event(crypt, query, body, 65536, accept={A, B}.__contains__)


def test_decrypt_from_names_the_receiveid() -> None:
    crypt = WXBizMsgCrypt(TOKEN, AES_KEY, A)
    encrypted = crypt.encrypt("hello")
    assert WXBizMsgCrypt(TOKEN, AES_KEY, SUITE).decrypt_from(encrypted, {A}.__contains__) == ("hello", A)
    with pytest.raises(CryptoError):
        WXBizMsgCrypt(TOKEN, AES_KEY, SUITE).decrypt_from(encrypted, {B}.__contains__)
    with pytest.raises(CryptoError):
        WXBizMsgCrypt(TOKEN, AES_KEY, SUITE).decrypt(encrypted)
