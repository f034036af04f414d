"""A local stand-in for Amazon Bedrock's Converse API (``bedrock-runtime``), served over real HTTP.

Kefu's route function calls ``boto3.client("bedrock-runtime").converse(...)``; pointing boto3 at
this server with ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (or ``endpoint_url``) lets that code run
unchanged. The local stack starts one (``local/stack.py``); ``python -m local.bedrock_standin
[--port N]`` runs one on its own.

What it does, and where it stays at least as strict as Bedrock:

* ``POST /model/{modelId}/converse`` only (the model id percent-encoded in the path, as botocore
  sends it). Any other path or method answers 404 UnknownOperationException.
* Auth: an ``Authorization`` header of SigV4 form (``AWS4-HMAC-SHA256 Credential=.../bedrock/
  aws4_request, SignedHeaders=..., Signature=...``) and an ``X-Amz-Date`` (or ``Date``) header.
  None at all: 403 MissingAuthenticationTokenException; a header that is not SigV4 (a Bearer API
  key included): 403 IncompleteSignatureException; a credential scoped to another service: 403
  InvalidSignatureException. The signature itself is not checked, nor the region of the scope.
* Model ids: a fixed list of text models that support Converse (``MODEL_IDS``: the base ids and
  their ``us.``/``eu.``/``apac.`` inference profiles); any other id, an ARN included, answers 400
  ValidationException "The provided model identifier is invalid."
* The body is validated the way Bedrock does before any model runs (``validate_request``): a JSON
  object of known fields, alternating user/assistant messages starting with the user, content
  blocks with exactly one member, no blank text, no image or video for a model that reads only
  text (``MEDIA_MODELS``), ``inferenceConfig`` within its ranges. Each
  failure is a 400 ValidationException whose message names the field. Order of checks: auth,
  model id, body, then the knobs below (so a knob never hides a bad request).
* Errors go out as botocore's rest-json parser reads them: the HTTP status, ``x-amzn-ErrorType:
  <Code>:<namespace>`` and a ``{"message": ...}`` body, so boto3 raises the modeled exception
  (``client.exceptions.ValidationException`` and so on).

The answers are deterministic. Kefu's prompt carries, in the last user message, a
``<knowledge>`` block of ``<entry id="...">`` items (``问：`` phrasings joined by ``；``, then
``答：`` and the answer, possibly over several lines) and a ``<question>`` block. Each entry
scores one point per distinct CJK character bigram and per distinct Latin word (casefolded,
NFKC-normalised) of the question that also occurs in the entry's phrasings and answer. The best
entry (the first one on a tie) is the reply when it scores 2 or more: ``{"answer": <its answer
verbatim>, "sources": [<its id>]}``; else ``{"answer": null, "sources": []}``. A prompt with no
such blocks gets ``NO_KNOWLEDGE_REPLY``.

Usage figures are estimates, not a tokenizer: one token per CJK character (ideographs, kana,
hangul, CJK and full-width punctuation) plus one per 4 other non-space characters, rounded up,
counted over all the system and message text for input and over the reply for output. A reply
is cut at the first stop sequence (``stopReason: "stop_sequence"``), then to ``maxTokens``
(``stopReason: "max_tokens"``).

Knobs (``behave``), each optionally scoped to requests whose question contains a substring (the
``<question>`` text, else the text of the last user message), the latest matching rule winning:
``normal``, ``slow`` (wait ``delay`` seconds, 30 when not given, then answer), ``throttled``
(429 ThrottlingException), ``failing`` (500 InternalServerException), ``model_error`` (424
ModelErrorException), ``unavailable`` (503 ServiceUnavailableException), ``denied`` (403
AccessDeniedException, as when model access is not granted) and ``model_timeout`` (408
ModelTimeoutException). ``reply`` replaces the model's text verbatim. ``delay`` applies to any
mode. ``requests`` / ``calls()`` give the log of converse calls (recorded when the answer is
decided, so before a slow answer's wait). The same knobs, for other processes, are
``POST /_standin/behave``, ``POST /_standin/reset`` and ``GET /_standin/requests[?contains=...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
ADMIN_PREFIX = "/_standin/"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
MAX_BODY = 8 * 1024 * 1024
SLOW_DEFAULT_DELAY = 30.0
NO_KNOWLEDGE_REPLY = "stand-in: no knowledge in the prompt"
INVALID_MODEL = "The provided model identifier is invalid."

_BASE_MODELS = (
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
)
MODEL_IDS = frozenset(_BASE_MODELS + tuple(f"{geo}.{model}" for geo in ("us", "eu", "apac") for model in _BASE_MODELS))

# Top-level fields of a Converse body: those the brief names, plus serviceTier, outputConfig and
# projectIdentifier, which current botocore models serialize into the body too.
REQUEST_FIELDS = frozenset({
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig",
    "serviceTier", "outputConfig", "projectIdentifier",
})
CONTENT_BLOCK_MEMBERS = frozenset({
    "text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent", "cachePoint",
    "reasoningContent", "citationsContent", "searchResult",
})
SYSTEM_BLOCK_MEMBERS = frozenset({"text", "guardContent", "cachePoint"})
# Content a text-only model refuses: block member -> the base models (any profile prefix) that take it.
MEDIA_MODELS: dict[str, frozenset[str]] = {
    "image": frozenset({"amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"}),
    "video": frozenset({"amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"}),
}
INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
MAX_STOP_SEQUENCES = 4

# mode -> (HTTP status, error code, message); "normal" and "slow" answer.
FAILURES: dict[str, tuple[int, str, str]] = {
    "throttled": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "failing": (500, "InternalServerException", "The stand-in hit an internal error while handling the request."),
    "model_error": (424, "ModelErrorException", "The model failed while producing a response (stand-in model error)."),
    "unavailable": (503, "ServiceUnavailableException", "Bedrock is unable to process your request right now."),
    "denied": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "model_timeout": (408, "ModelTimeoutException", "The model took too long to respond (stand-in)."),
}
MODES = frozenset({"normal", "slow", *FAILURES})

Response = tuple[int, list[tuple[str, str]], bytes]

_CONVERSE_PATH = re.compile(r"^/model/([^/]+)/converse$")
_ENTRY = re.compile(r'<entry\s+id="([^"]*)"\s*>(.*?)</entry>', re.DOTALL)
_LATIN_WORD = re.compile(r"[0-9a-z\u00df-\u024f]+")


class StandInError(Exception):
    """A request the stand-in refuses, carried to the HTTP layer as an AWS-shaped error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _invalid(message: str) -> StandInError:
    return StandInError(400, "ValidationException", message)


def _constraint(value: Any, where: str, constraint: str) -> StandInError:
    shown = "null" if value is None else f"'{value}'"
    return _invalid(f"1 validation error detected: Value {shown} at '{where}' failed to satisfy constraint: {constraint}")


# ---------------------------------------------------------------------------------- text helpers

def _is_cjk_letter(char: str) -> bool:
    code = ord(char)
    return (
        0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF  # ideographs
        or 0x20000 <= code <= 0x3FFFF  # ideograph extensions B onwards
        or 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF  # kana
        or 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F  # hangul
    )


def _is_cjk(char: str) -> bool:
    """A character that costs a token of its own: a CJK letter, or CJK / full-width punctuation."""
    code = ord(char)
    return _is_cjk_letter(char) or 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFFEF


def estimate_tokens(text: str) -> int:
    """One per CJK character plus one per 4 other non-space characters (rounded up)."""
    cjk = other = 0
    for char in text:
        if _is_cjk(char):
            cjk += 1
        elif not char.isspace():
            other += 1
    return cjk + math.ceil(other / 4)


def _cut_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose estimate stays within ``limit``."""
    cjk = other = 0
    for index, char in enumerate(text):
        if _is_cjk(char):
            cjk += 1
        elif not char.isspace():
            other += 1
        if cjk + math.ceil(other / 4) > limit:
            return text[:index]
    return text


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _bigrams(text: str) -> set[str]:
    pairs: set[str] = set()
    for first, second in zip(text, text[1:], strict=False):
        if _is_cjk_letter(first) and _is_cjk_letter(second):
            pairs.add(first + second)
    return pairs


def _terms(text: str) -> set[str]:
    """The distinct CJK bigrams and Latin words of a text, the units the answer rule matches on."""
    normal = _normalize(text)
    return _bigrams(normal) | set(_LATIN_WORD.findall(normal))


# ---------------------------------------------------------------------------------- the prompt

@dataclass(frozen=True)
class Entry:
    id: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Prompt:
    """What the stand-in reads from a prompt: the knowledge entries and the customer's question."""

    entries: tuple[Entry, ...]
    question: str


def _parse_entry(entry_id: str, body: str) -> Entry:
    questions: list[str] = []
    answer_at = body.find("答：")
    head = body if answer_at < 0 else body[:answer_at]
    for line in head.splitlines():
        line = line.strip()
        if line.startswith("问："):
            questions.extend(part.strip() for part in line[len("问："):].split("；") if part.strip())
    if answer_at >= 0:
        answer = body[answer_at + len("答："):].strip()
    elif questions:
        answer = ""
    else:  # no markers at all: the entry's whole text is its answer
        answer = body.strip()
    return Entry(entry_id, tuple(questions), answer)


def parse_prompt(text: str) -> Prompt | None:
    """The ``<knowledge>`` entries and ``<question>`` of a prompt text, or None unless it has both blocks."""
    k_start, k_end = text.find("<knowledge>"), text.find("</knowledge>")
    q_start, q_end = text.find("<question>"), text.rfind("</question>")
    if not (0 <= k_start < k_end and 0 <= q_start < q_end):
        return None
    knowledge = text[k_start + len("<knowledge>"):k_end]
    entries = tuple(_parse_entry(m.group(1), m.group(2)) for m in _ENTRY.finditer(knowledge))
    return Prompt(entries, text[q_start + len("<question>"):q_end].strip())


def choose_answer(prompt: Prompt) -> dict[str, Any]:
    """The reply the prompt's contract asks for, by the scoring rule in the module docstring."""
    wanted = _terms(prompt.question)
    best: Entry | None = None
    best_score = 0
    for entry in prompt.entries:
        haystack = _normalize("\n".join((*entry.questions, entry.answer)))
        words = set(_LATIN_WORD.findall(haystack))
        score = sum(1 for term in wanted if (term in words if _LATIN_WORD.fullmatch(term) else term in haystack))
        if score > best_score:
            best, best_score = entry, score
    if best is None or best_score < 2:
        return {"answer": None, "sources": []}
    return {"answer": best.answer, "sources": [best.id]}


# ---------------------------------------------------------------------------------- validation

def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_union(block: Any, members: frozenset[str], where: str, kind: str) -> str:
    if not isinstance(block, dict):
        raise _invalid(f"The {kind} object at {where} must be a JSON object.")
    if len(block) != 1:
        raise _invalid(f"The {kind} object at {where} must set exactly one member; it sets {len(block)}.")
    (member,) = block
    if member not in members:
        raise _invalid(f"The {kind} object at {where} has an unknown member '{member}'.")
    if member == "text":
        text = block["text"]
        if not isinstance(text, str):
            raise _invalid(f"The text field in the {kind} object at {where} must be a string.")
        if not text.strip():
            raise _invalid(f"The text field in the {kind} object at {where} is blank. Add text to the text field, and try again.")
    return str(member)


def _base_model(model_id: str) -> str:
    geo, _, rest = model_id.partition(".")
    return rest if geo in ("us", "eu", "apac") else model_id


def _check_messages(messages: Any, has_tools: bool, model_id: str) -> None:
    if messages is None:
        raise _constraint(None, "messages", "Member must not be null")
    if not isinstance(messages, list):
        raise _invalid("The messages field must be a list of Message objects.")
    if not messages:
        raise _invalid("The messages field is empty. Add at least one user message and try again.")
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"The Message object at messages.{i} must be a JSON object.")
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise _invalid(f"The Message object at messages.{i} has an unknown field '{extra[0]}'.")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _constraint(role, f"messages.{i}.member.role", "Member must satisfy enum value set: [user, assistant]")
        if i == 0 and role != "user":
            raise _invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
        if role == previous:
            raise _invalid("A conversation must alternate between user and assistant roles. "
                           "Make sure the conversation alternates between user and assistant roles and try again.")
        previous = role
        content = message.get("content")
        if content is None:
            raise _constraint(None, f"messages.{i}.member.content", "Member must not be null")
        if not isinstance(content, list):
            raise _invalid(f"The content field in the Message object at messages.{i} must be a list of ContentBlock objects.")
        if not content:
            raise _invalid(f"The content field in the Message object at messages.{i} is empty. "
                           "Add a ContentBlock object to the content field and try again.")
        for j, block in enumerate(content):
            member = _check_union(block, CONTENT_BLOCK_MEMBERS, f"messages.{i}.content.{j}", "ContentBlock")
            if member in ("toolUse", "toolResult") and not has_tools:
                raise _invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
            if member in MEDIA_MODELS and _base_model(model_id) not in MEDIA_MODELS[member]:
                raise _invalid(f"This model doesn't support the {member} content block that you provided "
                               f"(messages.{i}.content.{j}). Try again with a supported content block.")


def _check_inference(config: Any) -> None:
    if not isinstance(config, dict):
        raise _invalid("The inferenceConfig field must be a JSON object.")
    extra = sorted(set(config) - INFERENCE_FIELDS)
    if extra:
        raise _invalid(f"The inferenceConfig field has an unknown field '{extra[0]}'; allowed: {', '.join(sorted(INFERENCE_FIELDS))}.")
    if "maxTokens" in config:
        value = config["maxTokens"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid("The maxTokens field in inferenceConfig must be an integer.")
        if value < 1:
            raise _constraint(value, "inferenceConfig.maxTokens", "Member must have value greater than or equal to 1")
    for name in ("temperature", "topP"):
        if name in config:
            value = config[name]
            if not _is_number(value):
                raise _invalid(f"The {name} field in inferenceConfig must be a number.")
            if value < 0:
                raise _constraint(value, f"inferenceConfig.{name}", "Member must have value greater than or equal to 0")
            if value > 1:
                raise _constraint(value, f"inferenceConfig.{name}", "Member must have value less than or equal to 1")
    if "stopSequences" in config:
        stops = config["stopSequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _invalid("The stopSequences field in inferenceConfig must be a list of strings.")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise _invalid(f"The stopSequences field in inferenceConfig has {len(stops)} items; at most "
                           f"{MAX_STOP_SEQUENCES} are allowed.")
        for k, stop in enumerate(stops):
            if not stop:
                raise _constraint(stop, f"inferenceConfig.stopSequences.{k}", "Member must have length greater than or equal to 1")


def validate_request(body: Any, model_id: str = _BASE_MODELS[0]) -> None:
    """Raise a 400 ValidationException for a Converse body Bedrock would refuse (for that model)."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise _invalid(f"The request body has an unknown field '{unknown[0]}'; allowed: {', '.join(sorted(REQUEST_FIELDS))}.")
    for name in ("toolConfig", "guardrailConfig", "additionalModelRequestFields", "promptVariables", "performanceConfig",
                 "serviceTier", "outputConfig"):
        if name in body and not isinstance(body[name], dict):
            raise _invalid(f"The {name} field must be a JSON object.")
    if "toolConfig" in body and not isinstance(body["toolConfig"].get("tools"), list):
        raise _constraint(None, "toolConfig.tools", "Member must not be null")
    paths = body.get("additionalModelResponseFieldPaths", [])
    if not isinstance(paths, list) or len(paths) > 10 or not all(isinstance(p, str) for p in paths):
        raise _invalid("The additionalModelResponseFieldPaths field must be a list of at most 10 strings.")
    if "requestMetadata" in body:
        metadata = body["requestMetadata"]
        if (not isinstance(metadata, dict) or not 1 <= len(metadata) <= 16
                or not all(isinstance(v, str) for v in metadata.values())):
            raise _invalid("The requestMetadata field must map 1 to 16 keys to string values.")
    if "projectIdentifier" in body and not (isinstance(body["projectIdentifier"], str) and body["projectIdentifier"]):
        raise _invalid("The projectIdentifier field must be a non-empty string.")
    _check_messages(body.get("messages"), "toolConfig" in body, model_id)
    if "system" in body:
        system = body["system"]
        if not isinstance(system, list):
            raise _invalid("The system field must be a list of SystemContentBlock objects.")
        for i, block in enumerate(system):
            _check_union(block, SYSTEM_BLOCK_MEMBERS, f"system.{i}", "SystemContentBlock")
    if "inferenceConfig" in body:
        _check_inference(body["inferenceConfig"])


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json would take NaN and Infinity; JSON does not


def _texts(blocks: Iterable[Any]) -> list[str]:
    return [block["text"] for block in blocks if isinstance(block, dict) and isinstance(block.get("text"), str)]


def _check_auth(headers: Any) -> None:
    header = (headers.get("Authorization") or "").strip()
    if not header:
        raise StandInError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    scheme, _, rest = header.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        raise StandInError(403, "IncompleteSignatureException",
                           "The Authorization header must be an AWS Signature Version 4 (AWS4-HMAC-SHA256) signature.")
    params: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            params[key.strip()] = value.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not params.get(name)]
    if missing:
        raise StandInError(403, "IncompleteSignatureException", f"Authorization header requires '{missing[0]}' parameter.")
    scope = params["Credential"].split("/")
    if len(scope) != 5 or not re.fullmatch(r"\d{8}", scope[1]) or scope[4] != "aws4_request":
        raise StandInError(403, "IncompleteSignatureException",
                           "The Credential parameter must be <access key>/<yyyymmdd>/<region>/<service>/aws4_request.")
    if not headers.get("X-Amz-Date") and not headers.get("Date"):
        raise StandInError(403, "IncompleteSignatureException",
                           "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if scope[3] != "bedrock":
        raise StandInError(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")


# ---------------------------------------------------------------------------------- the server

@dataclass(frozen=True)
class Rule:
    contains: str | None
    mode: str
    delay: float
    reply: str | None

    def matches(self, text: str) -> bool:
        return self.contains is None or self.contains in text


@dataclass(frozen=True)
class Call:
    """One converse call as the stand-in saw it (failed ones included)."""

    model_id: str  # decoded from the path
    body: Any  # the parsed JSON body, None when it was not read or not JSON
    entry_ids: tuple[str, ...]  # the ``<entry>`` ids of the prompt, in order
    question: str | None  # the ``<question>`` text, None without one
    scope: str | None  # the text knobs and ``calls(contains)`` match: the question, else the last user text
    status: int  # the HTTP status answered
    error: str | None  # the error code answered, None on success
    stop_reason: str | None  # on success
    reply: str | None  # the text answered, on success
    delay: float  # seconds the answer was held back
    time: float  # epoch seconds the call was recorded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: BedrockStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection does not hold its thread forever
    server: _HttpServer

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        standin = self.server.standin
        response: Response | None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            response = _error_response(StandInError(400, "ValidationException", "The Content-Length header is not a byte count."))
        elif length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            response = _error_response(StandInError(400, "ValidationException", f"The request body exceeds {MAX_BODY} bytes."))
        else:
            raw = self.rfile.read(length) if length > 0 else b""
            response = standin._handle_http(method, self.path, self.headers, raw)  # noqa: SLF001 - its own server
        if response is None:  # the stand-in stopped while this request waited
            self.close_connection = True
            return
        status, headers, payload = response
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a read timeout) before the answer came
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass


def _request_id_header() -> tuple[str, str]:
    return "x-amzn-RequestId", str(uuid.uuid4())


def _json_response(obj: Any, status: int = 200) -> Response:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return status, [("Content-Type", "application/json"), _request_id_header()], body


def _error_response(error: StandInError) -> Response:
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", f"{error.code}:{ERROR_NAMESPACE}"),
        _request_id_header(),
    ]
    return error.status, headers, json.dumps({"message": error.message}, ensure_ascii=False).encode("utf-8")


class BedrockStandIn:
    """A Converse endpoint on loopback: ``start()`` returns the base URL for ``endpoint_url``."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self._rules: list[Rule] = []
        self._log: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"BedrockStandIn({self.base_url or 'not started'})"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serve in a daemon thread and return the base URL."""
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        server = _HttpServer((self.host, self.port), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="bedrock-standin", daemon=True
        )
        self._thread.start()
        self.port = int(server.server_address[1])
        self.base_url = f"http://{self.host}:{self.port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving; requests waiting on a ``slow`` rule are dropped unanswered."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> BedrockStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ knobs and log

    def behave(self, contains: str | None = None, *, mode: str = "normal", delay: float = 0.0,
               reply: str | None = None) -> None:
        """Add a rule for requests whose question contains ``contains`` (all requests when None)."""
        if contains is not None and not isinstance(contains, str):
            raise TypeError("contains must be a string or None")
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(sorted(MODES))}")
        if not _is_number(delay) or delay < 0 or not math.isfinite(delay):
            raise ValueError("delay must be a number of seconds >= 0")
        if reply is not None and not isinstance(reply, str):
            raise TypeError("reply must be a string or None")
        if mode == "slow" and not delay:
            delay = SLOW_DEFAULT_DELAY
        with self._lock:
            self._rules.append(Rule(contains, mode, float(delay), reply))

    def reset(self) -> None:
        """Forget every rule and every recorded request."""
        with self._lock:
            self._rules.clear()
            self._log.clear()

    @property
    def requests(self) -> list[Call]:
        """The converse calls so far, oldest first."""
        with self._lock:
            return list(self._log)

    def calls(self, contains: str | None = None) -> list[Call]:
        """The recorded calls whose question (as knobs see it) contains ``contains``; all when None."""
        return [call for call in self.requests if contains is None or contains in (call.scope or "")]

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def _rule_for(self, text: str) -> Rule | None:
        with self._lock:
            for rule in reversed(self._rules):
                if rule.matches(text):
                    return rule
        return None

    def _record(self, **record: Any) -> None:
        call = Call(**record, time=time.time())
        with self._lock:
            self._log.append(call)

    # ------------------------------------------------------------------ HTTP

    def _handle_http(self, method: str, raw_path: str, headers: Any, raw: bytes) -> Response | None:
        parts = urlsplit(raw_path)
        if parts.path.startswith(ADMIN_PREFIX):
            return self._handle_admin(method, parts.path[len(ADMIN_PREFIX):].strip("/"), parts.query, raw)
        match = _CONVERSE_PATH.match(parts.path)
        if match is None or method != "POST":
            return _error_response(StandInError(
                404, "UnknownOperationException", f"The stand-in serves POST /model/{{modelId}}/converse only, not {method} {parts.path}."))
        return self._converse(unquote(match.group(1)), headers, raw)

    def _converse(self, model_id: str, headers: Any, raw: bytes) -> Response | None:
        started = time.monotonic()
        record: dict[str, Any] = {"model_id": model_id, "body": None, "entry_ids": (), "question": None, "scope": None,
                                  "status": 200, "error": None, "stop_reason": None, "reply": None, "delay": 0.0}
        try:
            _check_auth(headers)
            if model_id not in MODEL_IDS:
                raise _invalid(INVALID_MODEL)
            try:
                body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
            except (UnicodeDecodeError, ValueError) as exc:
                raise _invalid("The request body is not valid UTF-8 JSON.") from exc
            record["body"] = body
            validate_request(body, model_id)
        except StandInError as error:
            record.update(status=error.status, error=error.code)
            self._record(**record)
            return _error_response(error)

        last_user = next(m for m in reversed(body["messages"]) if m["role"] == "user")
        user_text = "\n".join(_texts(last_user["content"]))
        prompt = next((p for p in map(parse_prompt, _texts(last_user["content"])) if p is not None), None)
        scope = prompt.question if prompt is not None else user_text
        record.update(entry_ids=tuple(e.id for e in prompt.entries) if prompt else (),
                      question=prompt.question if prompt else None, scope=scope)
        rule = self._rule_for(scope)
        mode = rule.mode if rule else "normal"
        record["delay"] = rule.delay if rule else 0.0

        if mode in FAILURES:
            status, code, message = FAILURES[mode]
            record.update(status=status, error=code)
            self._record(**record)
            if rule is not None and rule.delay and self._stopping.wait(rule.delay):
                return None
            return _error_response(StandInError(status, code, message))

        if rule is not None and rule.reply is not None:
            text = rule.reply
        elif prompt is None:
            text = NO_KNOWLEDGE_REPLY
        else:
            text = json.dumps(choose_answer(prompt), ensure_ascii=False)
        stop_reason = "end_turn"
        config = body.get("inferenceConfig") or {}
        cuts = [text.find(stop) for stop in config.get("stopSequences", []) if stop in text]
        if cuts:
            text, stop_reason = text[:min(cuts)], "stop_sequence"
        limit = config.get("maxTokens")
        if limit is not None and estimate_tokens(text) > limit:
            text, stop_reason = _cut_to_tokens(text, limit), "max_tokens"
        record.update(stop_reason=stop_reason, reply=text)
        self._record(**record)
        if rule is not None and rule.delay and self._stopping.wait(rule.delay):
            return None

        input_texts = _texts(body.get("system", []))
        for message in body["messages"]:
            input_texts.extend(_texts(message["content"]))
        input_tokens = estimate_tokens("\n".join(input_texts))
        output_tokens = estimate_tokens(text)
        return _json_response({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens},
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
        })

    def _handle_admin(self, method: str, action: str, query: str, raw: bytes) -> Response:
        if action == "requests":
            if method != "GET":
                return _json_response({"ok": False, "error": "use GET /_standin/requests"}, 405)
            contains = parse_qs(query).get("contains", [None])[0]
            return _json_response({"ok": True, "requests": [call.as_dict() for call in self.calls(contains)]})
        if action == "rules":
            if method != "GET":
                return _json_response({"ok": False, "error": "use GET /_standin/rules"}, 405)
            return _json_response({"ok": True, "rules": self.rules()})
        if action not in ("behave", "reset"):
            return _json_response({"ok": False, "error": f"unknown action {action!r}"}, 404)
        if method != "POST":
            return _json_response({"ok": False, "error": f"use POST /_standin/{action}"}, 405)
        if action == "reset":
            self.reset()
            return _json_response({"ok": True})
        try:
            args = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            return _json_response({"ok": False, "error": "the body is not JSON"}, 400)
        if not isinstance(args, dict):
            return _json_response({"ok": False, "error": "the body must be a JSON object"}, 400)
        extra = sorted(set(args) - {"contains", "mode", "delay", "reply"})
        if extra:
            return _json_response({"ok": False, "error": f"unknown field {extra[0]!r}"}, 400)
        try:
            self.behave(args.get("contains"), mode=args.get("mode", "normal"), delay=args.get("delay", 0.0),
                        reply=args.get("reply"))
        except (TypeError, ValueError) as exc:
            return _json_response({"ok": False, "error": str(exc)}, 400)
        return _json_response({"ok": True})


def main(argv: list[str] | None = None) -> None:
    """Serve a stand-in until interrupted."""
    parser = argparse.ArgumentParser(description="Local stand-in for Amazon Bedrock's Converse API")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    standin = BedrockStandIn(port=args.port)
    base_url = standin.start()
    print(f"bedrock stand-in ready: {base_url} (export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={base_url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
