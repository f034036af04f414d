"""The WeCom client against the simulator over HTTP, with its token shared through DynamoDB (moto)."""

from __future__ import annotations

import uuid

import pytest

from kefu.config import Settings
from kefu.wecom import kf
from kefu.wecom.client import WeComClient, encode_json, new_pool
from kefu.wecom.connect import connect
from kefu.wecom.errors import WeComError

pytestmark = pytest.mark.integration

# The stack serves only its tables here: its sync and route functions stay idle, so the customers
# these tests drive stay where the tests put them (a routed customer could not be sent to).
STACK_ENV = {"KEFU_LOCAL_PAUSED": "SyncFunction,RouteFunction"}


@pytest.fixture
def settings(stack, clients, simulator, aws_endpoint, monkeypatch) -> Settings:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    prefix = f"/kefu-test-{uuid.uuid4().hex[:8]}"
    for name, value in (("corp-secret", simulator.corp_secret), ("callback-token", simulator.token),
                        ("encoding-aes-key", simulator.encoding_aes_key)):
        clients.ssm.put_parameter(Name=f"{prefix}/{name}", Value=value, Type="SecureString")
    simulator.clear_faults()
    return Settings(WECOM_CORP_ID=simulator.corp_id, KEFU_SECRETS_PREFIX=prefix,
                    WECOM_API_BASE=simulator.base_url, KEFU_STATE_TABLE=stack.resources["StateTable"])


def account_list(client: WeComClient) -> list:
    return client.read("kf/account/list", {"offset": 0, "limit": 100})["account_list"]


def test_containers_share_one_token(settings, simulator) -> None:
    before = simulator.gettoken_count
    first, second = connect(settings), connect(settings)
    account_list(first)
    account_list(second)
    account_list(first)
    assert simulator.gettoken_count - before == 1


def test_expired_token_is_refreshed_and_the_call_retried_once(settings, simulator) -> None:
    client = connect(settings)
    account_list(client)
    before = simulator.gettoken_count
    simulator.expire_all_tokens()
    account_list(client)  # 42001 -> refresh -> retry
    assert simulator.gettoken_count - before == 1
    account_list(connect(settings))  # another container picks up the refreshed token from DynamoDB
    assert simulator.gettoken_count - before == 1


@pytest.mark.parametrize("fault", [{"errcode": -1, "times": 2}, {"errcode": 45009}, {"errcode": 45033},
                                   {"http_status": 502, "times": 2}])
def test_reads_are_retried_on_transient_failures(settings, simulator, fault) -> None:
    client = connect(settings)
    account_list(client)
    calls = len(simulator.calls_to("kf/account/list"))
    simulator.inject_fault("kf/account/list", **fault)
    account_list(client)
    assert len(simulator.calls_to("kf/account/list")) - calls == fault.get("times", 1) + 1


def test_writes_are_never_repeated_blindly(settings, simulator) -> None:
    client = connect(settings)
    open_kfid = simulator.add_account(name="w")
    euid, _ = simulator.customer_enter(open_kfid)
    simulator.customer_says(open_kfid, euid, "hi")
    simulator.inject_fault("kf/send_msg", errcode=-1)
    with pytest.raises(WeComError) as info:
        client.write("kf/send_msg", {"touser": euid, "open_kfid": open_kfid, "msgtype": "text", "text": {"content": "好"}})
    assert info.value.errcode == -1 and info.value.transient
    assert len(simulator.calls_to("kf/send_msg")) == 1


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_a_send_wecom_did_not_run_is_sent_again_with_the_same_msgid(settings, simulator, errcode) -> None:
    client = connect(settings)
    open_kfid = simulator.add_account(name=f"ne{errcode}")
    euid, _ = simulator.customer_enter(open_kfid)
    simulator.customer_says(open_kfid, euid, "hi")
    before = len(simulator.calls_to("kf/send_msg"))
    simulator.inject_fault("kf/send_msg", errcode=errcode, times=2)
    kf.send_text(client, open_kfid, euid, "kretry" + str(abs(errcode)), "好")
    calls = simulator.calls_to("kf/send_msg")[before:]
    assert len(calls) == 3 and {c["body"]["msgid"] for c in calls} == {"kretry" + str(abs(errcode))}
    assert [s["msgid"] for s in simulator.sent_messages() if s["msgid"].startswith("kretry")].count(
        "kretry" + str(abs(errcode))) == 1


def test_a_send_with_an_unclear_answer_is_not_repeated(settings, simulator) -> None:
    client = connect(settings)
    open_kfid = simulator.add_account(name="unclear")
    euid, _ = simulator.customer_enter(open_kfid)
    simulator.customer_says(open_kfid, euid, "hi")
    before = len(simulator.calls_to("kf/send_msg"))
    simulator.inject_fault("kf/send_msg", http_status=502)  # WeCom may or may not have sent it
    with pytest.raises(WeComError) as info:
        kf.send_text(client, open_kfid, euid, "kunclear", "好")
    assert info.value.http_status == 502
    assert len(simulator.calls_to("kf/send_msg")) - before == 1


def test_a_send_whose_answer_was_lost_is_settled_as_sent_by_errcode_alone(settings, stack, simulator, aws,
                                                                          aws_endpoint) -> None:
    """The simulator sends it but the answer never arrives; the record's retry is refused as a
    used msgid - errcode USED_MSGID, with an errmsg that does not say "duplicate" - and Kefu's
    ledger (the session item, in DynamoDB) holds the first attempt: sent, on one unit."""
    import time

    from kefu.routing import decide
    from kefu.routing.outcome import Outcome
    from kefu.routing import outbound
    from kefu.routing.sending import REPEATED_ATTEMPT, Said, Sender
    from kefu.store.messages import MessageStore
    from kefu.store.routing_state import LoadStore, PoolStore, RosterStore, RoutingState, SessionStore
    from kefu.wecom.errors import USED_MSGID

    table_name = settings.state_table
    table = aws.resource("dynamodb", endpoint_url=aws_endpoint).Table(table_name)
    state = RoutingState(SessionStore(table_name, table), LoadStore(table_name, table), RosterStore(table_name, table),
                         PoolStore(table_name, table))
    open_kfid = simulator.add_account(name="lost answer")
    euid, _ = simulator.customer_enter(open_kfid, welcome=False)
    simulator.customer_says(open_kfid, euid, "hi")
    state.sessions.update(open_kfid, euid, {"state": 0, "window_at": int(time.time()), "sends": 0})
    refused: list[WeComError] = []
    client = WeComClient(simulator.base_url, token_source=lambda: _token(simulator), timeout=0.3,
                         backoff=0.01, on_error=refused.append)
    messages_name = stack.resources["MessagesTable"]
    transcript = MessageStore(messages_name, aws.resource("dynamodb", endpoint_url=aws_endpoint).Table(messages_name))
    sender = Sender(client, state, time.time, transcript)
    msgid = decide.send_id("m-lost", "bot")
    said = Said(open_kfid, euid, "bot keyword", "m-lost")
    simulator.inject_fault("kf/send_msg", delay=1.0)  # answered after the client gave up waiting
    with pytest.raises(WeComError) as info:
        sender.send(said, "bot", outbound.text("好"))
    assert info.value.errcode is None
    deadline = time.time() + 10
    while not simulator.sent_messages(open_kfid, euid) and time.time() < deadline:
        time.sleep(0.05)
    assert [s["msgid"] for s in simulator.sent_messages(open_kfid, euid)] == [msgid]

    messages = aws.resource("dynamodb", endpoint_url=aws_endpoint).Table(messages_name)
    assert messages.get_item(Key={"msgid": msgid})["Item"]["send_state"] == "pending"  # written before the call
    result = sender.send(said, "bot", outbound.text("好"))  # the queue's retry
    assert result.outcome == Outcome.SENT
    assert refused[-1].errcode == USED_MSGID and "duplicate" not in refused[-1].errmsg.lower()
    assert [s["msgid"] for s in simulator.sent_messages(open_kfid, euid)] == [msgid]
    item = table.get_item(Key={"pk": f"rsession#{open_kfid}#{euid}", "sk": "s"}, ConsistentRead=True)["Item"]
    assert item["sends"] == 1 and item["send_ids"] == {msgid}
    assert state.sessions.take_send(open_kfid, euid, time.time(), msgid) == REPEATED_ATTEMPT
    assert messages.get_item(Key={"msgid": msgid})["Item"]["send_state"] == "sent"


def test_untrusted_ip_is_reported_not_retried(settings, simulator) -> None:
    client = connect(settings)
    account_list(client)
    calls = len(simulator.calls_to("kf/account/list"))
    simulator.inject_fault("kf/account/list", errcode=60020)
    with pytest.raises(WeComError) as info:
        account_list(client)
    assert info.value.errcode == 60020 and not info.value.transient
    assert len(simulator.calls_to("kf/account/list")) - calls == 1


def test_timeouts_are_retried_for_reads(simulator) -> None:
    simulator.clear_faults()
    client = WeComClient(simulator.base_url, token_source=lambda: _token(simulator), timeout=0.3, backoff=0.01)
    simulator.inject_fault("kf/account/list", delay=1.0)
    assert isinstance(account_list(client), list)


def test_a_timeout_is_an_unclear_answer_without_errcode_or_status(simulator) -> None:
    simulator.clear_faults()
    seen: list[WeComError] = []
    client = WeComClient(simulator.base_url, token_source=lambda: _token(simulator), timeout=0.3, backoff=0.01,
                         max_attempts=2, on_error=seen.append)
    simulator.inject_fault("kf/account/list", delay=1.0, times=2)
    with pytest.raises(WeComError) as info:
        account_list(client)
    assert (info.value.errcode, info.value.http_status, info.value.errmsg) == (None, None, "timed out")
    assert info.value.transient and len(seen) == 2  # read: tried again, then given up


def test_no_server_is_a_transport_error_not_a_timeout() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    client = WeComClient(f"http://127.0.0.1:{port}", token_source=lambda: "t", sleep=slept.append)
    with pytest.raises(WeComError) as info:
        account_list(client)
    assert info.value.errcode is None and info.value.http_status is None and info.value.transient
    assert info.value.errmsg.startswith("transport error: ")
    assert len(slept) == 3  # a read: four attempts


def test_calls_reuse_one_kept_alive_connection(simulator) -> None:
    simulator.clear_faults()
    http = new_pool()
    token = _token(simulator)
    client = WeComClient(simulator.base_url, token_source=lambda: token, http=http)
    for _ in range(3):
        account_list(client)
    pool = http.connection_from_url(simulator.base_url)
    assert (pool.num_connections, pool.num_requests) == (1, 3)
    client.close()
    account_list(client)  # a closed client opens a new connection
    assert http.connection_from_url(simulator.base_url).num_connections == 1


def test_upload_is_multipart_and_download_is_binary_with_its_content_type(simulator) -> None:
    simulator.clear_faults()
    token = _token(simulator)
    client = WeComClient(simulator.base_url, token_source=lambda: token)
    data = b"%PDF-1.4 " + bytes(range(256)) * 4
    media_id, _ = kf.media_upload(client, "file", "报告 2024.pdf", data, "application/pdf")
    upload = simulator.calls_to("media/upload")[-1]
    assert upload["body"] == {"media": {"filename": "报告 2024.pdf", "content_type": "application/pdf",
                                        "size": len(data)}}
    assert kf.media_get(client, media_id) == (data, "application/pdf")
    image = simulator.add_media(b"\xff\xd8\xff" + bytes(100), "image/jpeg")
    assert client.download("media/get", {"media_id": image}) == (b"\xff\xd8\xff" + bytes(100), "image/jpeg")
    with pytest.raises(WeComError) as info:
        kf.media_get(client, "no-such-media")
    assert info.value.errcode is not None and not info.value.transient
    simulator.inject_fault("media/get", http_status=503)
    assert kf.media_get(client, media_id) == (data, "application/pdf")  # a read: 5xx retried
    simulator.inject_fault("media/upload", errcode=-1)
    assert kf.media_upload(client, "file", "a.pdf", data, "application/pdf")[0]  # busy: sent again


def test_wrong_secret_fails_with_wecom_code(simulator) -> None:
    with pytest.raises(WeComError) as info:
        WeComClient(simulator.base_url).gettoken(simulator.corp_id, "wrong")
    assert info.value.errcode == 40001


def _token(simulator) -> str:
    return WeComClient(simulator.base_url).gettoken(simulator.corp_id, simulator.corp_secret)[0]


def test_json_is_sent_as_raw_utf8() -> None:
    assert encode_json({"content": "你好"}) == '{"content":"你好"}'.encode()
    assert b"\\u" not in encode_json({"content": "你好"})


def test_a_failed_refresh_keeps_the_valid_token_and_backs_off_for_every_container(settings, simulator) -> None:
    import time

    from kefu.store.tokens import StoredToken, TokenTable
    from kefu.wecom.errors import BAD_CORP_ID
    from kefu.wecom.tokens import token_key

    account_list(connect(settings))  # a valid token in the shared item
    store = TokenTable(settings.state_table, token_key(settings.corp_id, simulator.corp_secret))
    token = store.read().token
    assert token is not None
    store.save(StoredToken(token.access_token, time.time() + 100))  # inside the refresh window, not expired
    before, started = simulator.gettoken_count, time.time()
    simulator.inject_fault("gettoken", errcode=BAD_CORP_ID, times=10)
    account_list(connect(settings))  # the refresh fails; the stored token still serves
    state = store.read()
    assert state.failures == 1 and started < state.refresh_after <= time.time() + 1  # 0.5-1 s after the failure
    # The first pause is a second at most, shorter than a loaded machine may take between two
    # calls: pin the shared backoff longer, and see another container keep to it.
    store.back_off(1, time.time() + 30)
    account_list(connect(settings))  # another container: backing off, no gettoken
    assert simulator.gettoken_count - before == 1
    assert not store.try_lease(time.time(), 10)  # the table refuses the lease until refresh_after
    simulator.clear_faults()
    store.back_off(1, time.time() - 1)  # the pause is over
    account_list(connect(settings))  # backoff over: refreshed, and the backoff is cleared
    assert simulator.gettoken_count - before == 2
    state = store.read()
    assert (state.failures, state.refresh_after) == (0, 0)
    assert state.token is not None and state.token.expires_at > time.time() + 7000
