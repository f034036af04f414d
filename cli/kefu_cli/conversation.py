"""`kefu send`, `kefu transfer`, `kefu end`: the conversation API's POST routes
(/conversations/{external_userid}/messages, /transfer, /end), signed like `kefu stats` when the
stack is deployed (kefu_cli.api), plain against the local stack.

The stack decides: a send or a move WeCom would refuse now is answered 409 with the rule that
forbids it (exit 1); a request the API cannot take (a bad message, account or customer) is
answered 400 (exit 2, like a usage error). A send is named by its idempotency key: the same key
is the same send, so a retry with the key never sends twice."""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from kefu_cli.api import error_detail, request_headers
from kefu_cli.target import CliError, Target

IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")  # the API's: 1-128 printable ASCII, no spaces
TRANSFER_TARGETS = ("servicer", "pool", "bot")


def parse_key(text: str) -> str:
    """argparse type of --key."""
    import argparse

    if not IDEMPOTENCY_KEY_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an idempotency key (1-128 printable ASCII characters, "
                                         "no spaces)")
    return text


def new_key() -> str:
    return f"kefu-cli-{uuid.uuid4().hex}"


def load_message(text: str | None, json_message: str | None, file: Path | None) -> Any:
    """The message to send: TEXT as a text; --json-message / --file as JSON (a string is a text,
    an object names exactly one kind). A message that is not JSON is a usage error (exit 2); the
    API checks the rest."""
    if text is not None:
        return text
    if file is not None:
        where = "stdin" if str(file) == "-" else str(file)
        try:
            raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the message from {where}: {exc}", exit_code=2) from None
    else:
        where, raw = "--json-message", json_message or ""
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"the message in {where} is not JSON: {exc}", exit_code=2) from None
    if not isinstance(message, str | dict):
        raise CliError(f"the message in {where} is a JSON string (a text) or an object with one kind "
                       '(e.g. {"text": "..."}, {"image": {"s3": "assets/a.png"}})', exit_code=2)
    return message


@dataclass(frozen=True)
class Answer:
    """The API's answer: 200, 409 (refused by a rule), or another 4xx the request caused."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        return 1 if self.status == 409 else 2

    def problem(self) -> str:
        """What went wrong, for people: the rule and the API's message."""
        message = self.body.get("message") or ""
        if self.status == 409:
            return f"refused by rule {self.body.get('rule') or '?'}: {message}"
        return f"{self.body.get('error') or self.status}: {message}"


def post(target: Target, http: Any, external_userid: str, action: str, account: str,
         payload: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Answer:
    """POST /conversations/{external_userid}/{action}?account=... with a JSON body."""
    path = f"/conversations/{quote(external_userid, safe='')}/{action}"
    url = target.url(path) + "?" + urlencode({"account": account})
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
    plain = dict(headers or {})
    if payload is not None:
        plain["Content-Type"] = "application/json"
    what = f"POST /conversations/.../{action}"
    response = http.post(url, content=body, headers=request_headers(target, "POST", url, what, body, plain))
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and (status == 200 or (400 <= status < 500 and status not in (403, 404)
                                                     and "error" in data)):
        return Answer(status, data)
    hint = ""
    if status == 403 and not target.local:
        hint = " (the caller needs execute-api:Invoke on the stack's HTTP API)"
    elif status == 404:
        hint = " (this stack has no conversation API: deploy the current template.yaml)"
    elif status == 200:
        hint = " (not a JSON object)"
    raise CliError(f"{what} answered {status}: {error_detail(response)}{hint}")


def send(target: Target, http: Any, external_userid: str, account: str, message: Any, key: str) -> Answer:
    return post(target, http, external_userid, "messages", account, {"message": message}, {"Idempotency-Key": key})


def transfer(target: Target, http: Any, external_userid: str, account: str, to: str,
             servicer: str | None = None) -> Answer:
    if to not in TRANSFER_TARGETS:
        raise CliError(f"a transfer goes to one of {', '.join(TRANSFER_TARGETS)}", exit_code=2)
    body: dict[str, Any] = {"to": to}
    if to == "servicer":
        body["servicer"] = servicer
    return post(target, http, external_userid, "transfer", account, body)


def end(target: Target, http: Any, external_userid: str, account: str) -> Answer:
    return post(target, http, external_userid, "end", account)


def _state(value: Any) -> str:
    from kefu_cli.customer import state_name

    return f"state {value}, {state_name(value)}"


def render_send(answer: Answer, external_userid: str, key: str) -> str:
    msgid = answer.body.get("msgid")
    if answer.body.get("repeated"):
        return (f"already sent to {external_userid}: msgid {msgid} (idempotency key {key} was used before; "
                "nothing sent again)")
    return f"sent to {external_userid}: msgid {msgid} (idempotency key {key})"


def render_transfer(answer: Answer, external_userid: str) -> str:
    state, servicer = answer.body.get("state"), answer.body.get("servicer")
    where = {2: "the pool", 1: "Kefu (held by the API)"}.get(state if isinstance(state, int) else -1,
                                                            f"servicer {servicer}" if servicer else "?")
    if not answer.body.get("changed"):
        return f"{external_userid} is already with {where} ({_state(state)}): nothing changed"
    return f"{external_userid} transferred to {where} ({_state(state)})"


def render_end(answer: Answer, external_userid: str) -> str:
    return f"ended the session of {external_userid} ({_state(answer.body.get('state'))})"
