"""`kefu send`, `kefu transfer`, `kefu end`: their arguments and usage errors, the message they
read, the requests they build (SigV4-signed, body and headers included, when deployed; plain
locally), and what they make of the conversation API's answers (the commands against the local
stack: tests/integration/test_cli_send.py)."""

from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.auth
import pytest
from botocore.credentials import ReadOnlyCredentials

from kefu_cli import conversation, main
from kefu_cli.api import sigv4_headers
from kefu_cli.main import parse_args
from kefu_cli.target import CliError, Target

EUID = "wmCUSTOMER123"
ACCOUNT = "wkACCOUNT".ljust(32, "0")
API = "https://abc123.execute-api.ap-east-1.amazonaws.com"


# -- arguments ---------------------------------------------------------------------------------

def test_send_takes_a_text_a_json_message_or_a_file() -> None:
    args = parse_args(["send", EUID, "hello 你好", "--account", ACCOUNT])
    assert (args.command, args.external_userid, args.account, args.text, args.json_message, args.file, args.key) == (
        "send", EUID, ACCOUNT, "hello 你好", None, None, None)
    args = parse_args(["--local", "send", EUID, "--account", ACCOUNT, "--json-message", '{"text": "x"}',
                       "--key", "ticket-42/reply-1", "--json"])
    assert (args.text, args.json_message, args.key, args.local, args.json) == (
        None, '{"text": "x"}', "ticket-42/reply-1", True, True)
    assert parse_args(["send", EUID, "--account", ACCOUNT, "--file", "m.json"]).file == Path("m.json")
    assert parse_args(["send", EUID, "--account", ACCOUNT, "--key", "k" * 128, "hi"]).key == "k" * 128


@pytest.mark.parametrize(("argv", "says"), [
    (["send", EUID, "--account", ACCOUNT], "exactly one"),
    (["send", EUID, "hi", "--account", ACCOUNT, "--json-message", '"hi"'], "exactly one"),
    (["send", EUID, "--account", ACCOUNT, "--json-message", '"hi"', "--file", "m.json"], "exactly one"),
    (["send", EUID, "hi"], "--account"),
    (["send", EUID, "--account", ACCOUNT, "a", "b"], "unrecognized arguments: a b"),
    (["send", EUID, "--account", ACCOUNT, "--json-message", '"x"', "hi"], "exactly one"),
    (["end", EUID, "--account", ACCOUNT, "extra"], "unrecognized arguments: extra"),
    (["send", "--account", ACCOUNT], "EXTERNAL_USERID"),
    (["send", EUID, "hi", "--account", ACCOUNT, "--key", "has space"], "not an idempotency key"),
    (["send", EUID, "hi", "--account", ACCOUNT, "--key", "k" * 129], "not an idempotency key"),
    (["send", EUID, "hi", "--account", ACCOUNT, "--key", "钥匙"], "not an idempotency key"),
    (["transfer", EUID, "--account", ACCOUNT], "one of the arguments --to-servicer --to-pool --to-bot is required"),
    (["transfer", EUID, "--account", ACCOUNT, "--to-pool", "--to-bot"], "not allowed with"),
    (["transfer", EUID, "--account", ACCOUNT, "--to-servicer"], "expected one argument"),
    (["transfer", EUID, "--to-pool"], "--account"),
    (["end", EUID], "--account"),
    (["end", "--account", ACCOUNT], "EXTERNAL_USERID"),
])
def test_usage_errors_exit_2_and_say_what_to_give(argv: list[str], says: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_transfer_and_end_arguments() -> None:
    args = parse_args(["transfer", EUID, "--account", ACCOUNT, "--to-servicer", "bob"])
    assert (args.command, args.to, args.servicer) == ("transfer", "servicer", "bob")
    assert (parse_args(["transfer", EUID, "--account", ACCOUNT, "--to-pool"]).to,
            parse_args(["transfer", EUID, "--account", ACCOUNT, "--to-bot"]).to) == ("pool", "bot")
    assert parse_args(["transfer", EUID, "--account", ACCOUNT, "--to-bot"]).servicer is None
    args = parse_args(["end", EUID, "--account", ACCOUNT, "--json"])
    assert (args.command, args.external_userid, args.account, args.json) == ("end", EUID, ACCOUNT, True)


# -- the message -------------------------------------------------------------------------------

def test_the_message_is_the_text_or_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert conversation.load_message("plain {not json}", None, None) == "plain {not json}"
    assert conversation.load_message(None, '"a text"', None) == "a text"
    menu = {"msgmenu": {"head": "选一个", "items": [{"click": {"id": "a", "content": "A"}}]}}
    assert conversation.load_message(None, json.dumps(menu), None) == menu
    path = tmp_path / "message.json"
    path.write_text(json.dumps({"image": {"s3": "assets/a.png"}}), encoding="utf-8")
    assert conversation.load_message(None, None, path) == {"image": {"s3": "assets/a.png"}}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "from stdin"}'))
    assert conversation.load_message(None, None, Path("-")) == {"text": "from stdin"}


@pytest.mark.parametrize(("json_message", "file", "says"), [
    ("{not json", None, "--json-message is not JSON"),
    ("[1, 2]", None, "a JSON string (a text) or an object"),
    ("42", None, "a JSON string (a text) or an object"),
    (None, "missing.json", "cannot read the message from"),
])
def test_a_message_that_is_not_a_message_is_a_usage_error(tmp_path: Path, json_message: str | None,
                                                          file: str | None, says: str) -> None:
    with pytest.raises(CliError, match=re.escape(says)) as error:
        conversation.load_message(None, json_message, tmp_path / file if file else None)
    assert error.value.exit_code == 2


def test_a_new_key_is_a_valid_key_and_new_each_time() -> None:
    keys = {conversation.new_key() for _ in range(3)}
    assert len(keys) == 3 and all(conversation.parse_key(k) == k for k in keys)


# -- the requests ------------------------------------------------------------------------------

class Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self) -> Any:
        return json.loads(self.text)


class Http:
    """An httpx.Client stand-in: records each POST, answers the next canned answer."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers) or [(200, {"msgid": "m1", "state": "sent", "repeated": False})]
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, content: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        self.posts.append({"url": url, "content": content, "headers": dict(headers or {})})
        return Response(*self.answers.pop(0))

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class Credentials:
    def __init__(self, frozen: Any) -> None:
        self.frozen = frozen

    def get_frozen_credentials(self) -> Any:
        return self.frozen


class Session:
    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def get_credentials(self) -> Any:
        return self.credentials


def local() -> Target:
    return Target(local=True, stack_name="kefu-local", region="us-east-1",
                  outputs={"ApiBaseUrl": "http://127.0.0.1:3000"}, parameters={})


def deployed(credentials: Any = "canned") -> Target:
    if credentials == "canned":
        credentials = Credentials(ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token"))
    return Target(local=False, stack_name="kefu", region="ap-east-1", outputs={"ApiBaseUrl": API + "/"},
                  parameters={}, _session=Session(credentials))


def test_a_send_to_the_local_stack_is_plain_json_with_its_key() -> None:
    http = Http()
    answer = conversation.send(local(), http, EUID, ACCOUNT, "你好", "key-1")
    assert answer.ok and answer.exit_code == 0 and answer.body["msgid"] == "m1"
    sent = http.posts[0]
    parts = urlsplit(sent["url"])
    assert parts.path == f"/conversations/{EUID}/messages" and parse_qs(parts.query) == {"account": [ACCOUNT]}
    assert json.loads(sent["content"]) == {"message": "你好"}
    assert sent["headers"] == {"Idempotency-Key": "key-1", "Content-Type": "application/json"}


def test_transfer_and_end_bodies() -> None:
    http = Http((200, {"state": 3, "servicer": "bob", "changed": True}), (200, {"state": 2, "changed": True}),
                (200, {"state": 1, "changed": False}), (200, {"state": 4}))
    conversation.transfer(local(), http, EUID, ACCOUNT, "servicer", "bob")
    conversation.transfer(local(), http, EUID, ACCOUNT, "pool")
    conversation.transfer(local(), http, EUID, ACCOUNT, "bot")
    conversation.end(local(), http, EUID, ACCOUNT)
    assert [urlsplit(p["url"]).path.rsplit("/", 1)[1] for p in http.posts] == ["transfer"] * 3 + ["end"]
    assert [json.loads(p["content"]) for p in http.posts[:3]] == [{"to": "servicer", "servicer": "bob"},
                                                                  {"to": "pool"}, {"to": "bot"}]
    assert http.posts[3]["content"] == b"" and http.posts[3]["headers"] == {}


def test_the_customer_is_one_path_segment() -> None:
    http = Http()
    conversation.send(local(), http, "wm../../stats?x", ACCOUNT, "hi", "k")
    assert urlsplit(http.posts[0]["url"]).path == "/conversations/wm..%2F..%2Fstats%3Fx/messages"


def test_a_deployed_send_is_signed_with_its_body_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.datetime(2026, 3, 1, 8, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    http = Http()
    conversation.send(deployed(), http, EUID, ACCOUNT, {"text": "签名"}, "key-7")
    sent = http.posts[0]
    assert sent["url"] == f"{API}/conversations/{EUID}/messages?account={ACCOUNT}"
    headers = sent["headers"]
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260301/ap-east-1/execute-api/aws4_request")
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"content-type", "host", "idempotency-key", "x-amz-date", "x-amz-security-token"} <= set(signed)
    assert headers["Idempotency-Key"] == "key-7" and headers["X-Amz-Security-Token"] == "session-token"
    # The signature is over exactly what was sent: signing the sent request again gives it again ...
    plain = {k: v for k, v in headers.items() if k in ("Idempotency-Key", "Content-Type")}
    frozen = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token")
    again = sigv4_headers(frozen, "ap-east-1", "POST", sent["url"], sent["content"], plain)
    assert again["Authorization"] == auth
    # ... and another body or key would not match it.
    other_body = sigv4_headers(frozen, "ap-east-1", "POST", sent["url"], sent["content"] + b" ", plain)
    other_key = sigv4_headers(frozen, "ap-east-1", "POST", sent["url"], sent["content"],
                              {**plain, "Idempotency-Key": "key-8"})
    assert auth not in (other_body["Authorization"], other_key["Authorization"])


def test_a_deployed_end_without_credentials_says_so() -> None:
    with pytest.raises(CliError, match="no AWS credentials to sign POST /conversations/.../end"):
        conversation.end(deployed(credentials=None), Http(), EUID, ACCOUNT)


# -- the answers -------------------------------------------------------------------------------

def test_answers_and_exit_codes() -> None:
    refused = {"error": "refused", "message": "the 5 sends WeCom allows are used", "rule": "send_budget"}
    bad = {"error": "invalid_message", "message": "message.text: too long"}
    too_big = {"error": "body_too_large", "message": "the body is limited to 65536 bytes"}
    http = Http((409, refused), (400, bad), (413, too_big))
    first = conversation.send(local(), http, EUID, ACCOUNT, "x", "k")
    assert (first.ok, first.exit_code, first.body) == (False, 1, refused)
    assert first.problem() == "refused by rule send_budget: the 5 sends WeCom allows are used"
    second = conversation.send(local(), http, EUID, ACCOUNT, "x", "k")
    assert second.exit_code == 2 and second.problem() == "invalid_message: message.text: too long"
    assert conversation.send(local(), http, EUID, ACCOUNT, "x", "k").exit_code == 2


@pytest.mark.parametrize(("target", "status", "body", "says"), [
    (deployed(), 403, {"message": "Forbidden"}, "answered 403: Forbidden (the caller needs execute-api:Invoke"),
    (local(), 404, {"message": "Not Found"}, "answered 404: Not Found (this stack has no conversation API"),
    (local(), 500, "Internal Server Error", "answered 500: Internal Server Error"),
    (local(), 502, {"message": "Internal Server Error"}, "answered 502"),
    (local(), 200, "[]", "answered 200: [] (not a JSON object)"),
])
def test_answers_that_are_not_the_apis_are_errors(target: Target, status: int, body: Any, says: str) -> None:
    with pytest.raises(CliError, match=re.escape(says)) as error:
        conversation.end(target, Http((status, body)), EUID, ACCOUNT)
    assert error.value.exit_code == 1


def test_what_each_command_prints() -> None:
    sent = conversation.Answer(200, {"msgid": "m9", "state": "sent", "repeated": False})
    assert conversation.render_send(sent, EUID, "k1") == f"sent to {EUID}: msgid m9 (idempotency key k1)"
    again = conversation.Answer(200, {"msgid": "m9", "state": "sent", "repeated": True})
    assert conversation.render_send(again, EUID, "k1").startswith(f"already sent to {EUID}: msgid m9")
    moved = conversation.Answer(200, {"state": 3, "servicer": "bob", "changed": True})
    assert conversation.render_transfer(moved, EUID) == f"{EUID} transferred to servicer bob (state 3, with a servicer)"
    stayed = conversation.Answer(200, {"state": 3, "servicer": "bob", "changed": False})
    assert conversation.render_transfer(stayed, EUID).endswith("(state 3, with a servicer): nothing changed")
    pooled = conversation.Answer(200, {"state": 2, "changed": True})
    assert conversation.render_transfer(pooled, EUID) == f"{EUID} transferred to the pool (state 2, waiting in the pool)"
    held = conversation.Answer(200, {"state": 1, "changed": True})
    assert "transferred to Kefu (held by the API) (state 1, bot" in conversation.render_transfer(held, EUID)
    assert conversation.render_end(conversation.Answer(200, {"state": 4}), EUID) == (
        f"ended the session of {EUID} (state 4, ended)")


# -- the commands as a whole -------------------------------------------------------------------

@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Any:
    """main.main against a local target whose HTTP answers are canned."""

    class Stack:
        http = Http()

        def answer(self, *answers: tuple[int, Any]) -> None:
            self.http = Http(*answers)

    world = Stack()
    monkeypatch.setattr(main, "resolve_target", lambda **_: local())
    monkeypatch.setattr(main, "_http", lambda: world.http)
    return world


def test_send_prints_a_new_key_before_it_sends_and_the_msgid(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["send", EUID, "hi", "--account", ACCOUNT]) == 0
    out, err = capsys.readouterr()
    key = stack.http.posts[0]["headers"]["Idempotency-Key"]
    assert key.startswith("kefu-cli-") and f"--key {key}" in err
    assert out == f"sent to {EUID}: msgid m1 (idempotency key {key})\n"


def test_send_with_a_key_reuses_it_and_json_prints_the_answer(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.answer((200, {"msgid": "m1", "state": "sent", "repeated": True}))
    assert main.main(["send", EUID, "--account", ACCOUNT, "--json-message", '{"text": "hi"}', "--key", "k-1",
                      "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"msgid": "m1", "state": "sent", "repeated": True} and err == ""
    assert stack.http.posts[0]["headers"]["Idempotency-Key"] == "k-1"
    assert json.loads(stack.http.posts[0]["content"]) == {"message": {"text": "hi"}}


def test_a_refusal_prints_the_rule_and_exits_1(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    refused = {"error": "refused", "message": "the session is in state 3", "rule": "session_state"}
    stack.answer((409, refused), (409, refused))
    assert main.main(["send", EUID, "hi", "--account", ACCOUNT, "--key", "k"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "kefu: refused by rule session_state: the session is in state 3\n"
    assert main.main(["transfer", EUID, "--account", ACCOUNT, "--to-bot", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == refused


def test_a_request_the_api_cannot_take_exits_2(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.answer((400, {"error": "invalid_account", "message": "account (the kf account's open_kfid, wk...) is "
                                                                "required"}))
    assert main.main(["end", EUID, "--account", "nope"]) == 2
    assert capsys.readouterr().err == "kefu: invalid_account: account (the kf account's open_kfid, wk...) is required\n"


def test_a_bad_message_is_refused_before_any_key_or_request(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["send", EUID, "--account", ACCOUNT, "--json-message", "{oops"]) == 2
    assert stack.http.posts == [] and "kefu: the message in --json-message is not JSON" in capsys.readouterr().err


def test_transfer_and_end_print_where_the_session_went(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.answer((200, {"state": 3, "servicer": "bob", "changed": True}))
    assert main.main(["transfer", EUID, "--account", ACCOUNT, "--to-servicer", "bob"]) == 0
    assert capsys.readouterr().out == f"{EUID} transferred to servicer bob (state 3, with a servicer)\n"
    assert json.loads(stack.http.posts[0]["content"]) == {"to": "servicer", "servicer": "bob"}
    stack.answer((200, {"state": 4}))
    assert main.main(["end", EUID, "--account", ACCOUNT, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"state": 4}
