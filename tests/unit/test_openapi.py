"""docs/openapi.yaml against the code of the conversation API: the routes the template deploys, the
limits and enums the code enforces, every error code it can answer with, and the examples. (The
/links part is checked in test_links.py, which also validates the whole document.)

functions/route/conversations.py loads its settings when imported, so what it holds is read from
its source with ``ast``, never imported."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator  # installed with openapi-spec-validator
from pydantic import ValidationError

from kefu import ids
from kefu.conversations import PAGE_MAX
from kefu.routing import outbound
from local.template import Template

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
ROUTE = ROOT / "functions" / "route" / "conversations.py"
METHODS = ("get", "post", "put", "patch", "delete", "options", "head")


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in DOC["paths"].items()
            for method, op in item.items() if method in METHODS}


def signed_operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {key: op for key, op in operations().items() if op.get("security")}


def module_constant(path: Path, name: str) -> Any:
    """A module-level ``NAME = <constant expression>`` of a source file, evaluated without imports."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return eval(compile(ast.Expression(node.value), str(path), "eval"), {"__builtins__": {}})  # noqa: S307 - a literal
    raise AssertionError(f"{name} not found in {path}")


def calls(path: Path, function: str) -> list[list[Any]]:
    """The constant arguments of every call to ``function`` in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == function:
            found.append([a.value if isinstance(a, ast.Constant) else None for a in node.args])
    return found


def code_errors() -> dict[str, int]:
    """Every error code the conversation API's code raises, with its status."""
    errors: dict[str, int] = {}
    for source in (ROUTE, ROOT / "shared" / "kefu" / "conversations.py"):
        for args in calls(source, "bad"):
            errors[f"invalid_{args[0]}"] = 400
        for args in calls(source, "HttpError"):
            if len(args) > 1 and args[0] is not None and args[1] is not None:  # not bad()'s own f-string
                errors[str(args[1])] = int(args[0])
    return errors


def documented_errors(op: dict[str, Any]) -> dict[str, int]:
    """The error codes an operation's 4xx answers list (in the enum of their Error schema)."""
    errors: dict[str, int] = {}
    for status, response in op["responses"].items():
        if "$ref" in response:
            response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", []):
            for code in part.get("properties", {}).get("error", {}).get("enum", []):
                errors[code] = int(status)
    return errors


def refused_rules(op: dict[str, Any]) -> list[str]:
    response = op["responses"].get("409")
    if response is None:
        return []
    parts = response["content"]["application/json"]["schema"]["allOf"]
    assert parts[0] == {"$ref": "#/components/schemas/Refused"}
    return list(parts[1]["properties"]["rule"]["enum"])


def test_the_documented_signed_routes_are_the_conversation_functions_routes() -> None:
    template = Template.load(ROOT / "template.yaml", overrides={"WeComCorpId": "ww"})
    events = template.resources("AWS::Serverless::Function")["ConversationsFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events.values() if e["Type"] == "HttpApi"}
    assert routes and set(signed_operations()) == routes
    for op in signed_operations().values():
        assert op["security"] == [{"sigv4": []}]
        assert {"400", "403", "429"} <= set(op["responses"])
    scheme = DOC["components"]["securitySchemes"]["sigv4"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "SigV4" in scheme["description"] or "Signature Version 4" in scheme["description"]
    assert "execute-api:Invoke" in scheme["description"]
    assert "security" not in DOC  # /links stays public
    assert not any(op.get("security") for op in DOC["paths"]["/links"].values())


def test_the_limits_and_enums_are_the_codes() -> None:
    schemas, params = DOC["components"]["schemas"], DOC["components"]["parameters"]
    assert schemas["TransferRequest"]["properties"]["to"]["enum"] == list(module_constant(ROUTE, "TRANSFER_TARGETS"))
    for path in ("/conversations", "/conversations/{external_userid}"):
        limit = next(p for p in DOC["paths"][path]["get"]["parameters"] if p.get("name") == "limit")
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, PAGE_MAX)
    kinds = schemas["Message"]["oneOf"][1]
    assert list(kinds["properties"]) == list(outbound.KINDS)
    assert (kinds["minProperties"], kinds["maxProperties"], kinds["additionalProperties"]) == (1, 1, False)
    assert schemas["Menu"]["properties"]["items"]["maxItems"] == outbound.MENU_MAX_ITEMS
    assert schemas["MenuItem"]["properties"]["click"]["properties"]["id"]["maxLength"] == outbound.CLICK_ID_MAX
    assert schemas["Asset"]["properties"]["s3"]["pattern"] == f"^{outbound.S3_PREFIX}.+"
    assert params["Account"]["schema"]["pattern"] == f"^{ids.OPEN_KFID_RE.pattern}$"
    assert params["ExternalUserid"]["schema"]["pattern"] == f"^{ids.EXTERNAL_USERID_RE.pattern}$"
    key = next(p for p in DOC["paths"]["/conversations/{external_userid}/messages"]["post"]["parameters"]
               if p.get("name") == "Idempotency-Key")
    assert key["required"] is True and key["schema"]["pattern"] == f"^{ids.IDEMPOTENCY_KEY_RE.pattern}$"
    max_body = module_constant(ROUTE, "MAX_BODY")
    assert str(max_body) in DOC["components"]["responses"]["BodyTooLarge"]["description"]


def test_every_error_code_and_refusal_rule_of_the_code_is_documented() -> None:
    documented: dict[str, int] = {}
    for op in signed_operations().values():
        documented |= documented_errors(op)
        assert all(code.startswith("invalid_") for code, status in documented_errors(op).items() if status == 400)
    assert documented == code_errors()
    # The 409's rules: each route's subset, together every rule kefu.routing.operator refuses with.
    operator = ROOT / "shared" / "kefu" / "routing" / "operator.py"
    raised = {args[0] for args in calls(operator, "Refused")}
    refused = DOC["components"]["schemas"]["Refused"]["allOf"][1]["properties"]["rule"]["enum"]
    assert set(refused) == raised
    by_route = {path.rsplit("/", 1)[1]: refused_rules(op) for (_m, path), op in signed_operations().items()}
    assert set(by_route["messages"]) == {"session_state", "send_window", "send_budget", "wecom_state", "wecom_refused"}
    assert set(by_route["transfer"]) == {"session_state", "not_a_servicer"}
    assert by_route["end"] == ["session_state"]
    assert {r for rules in by_route.values() for r in rules} == raised
    # A body is read (and may be too large or not JSON) by the routes that take one, only.
    for op in signed_operations().values():
        takes_body = "requestBody" in op
        assert ("413" in op["responses"]) == takes_body
        assert ("invalid_body" in documented_errors(op)) == takes_body


def _validator(schema: dict[str, Any]) -> Any:
    return OAS31Validator({**schema, "components": DOC["components"]})


def _examples(media: dict[str, Any]) -> list[Any]:
    return ([media["example"]] if "example" in media else []) + [e["value"] for e in media.get("examples", {}).values()]


def test_the_examples_match_their_schemas() -> None:
    checked = 0
    for (method, path), op in signed_operations().items():
        bodies = [op["requestBody"]["content"]["application/json"]] if "requestBody" in op else []
        for response in op["responses"].values():
            if "$ref" not in response:
                bodies.extend(response.get("content", {}).values())
        for media in bodies:
            for example in _examples(media):
                errors = [e.message for e in _validator(media["schema"]).iter_errors(example)]
                assert not errors, (method, path, example, errors)
                checked += 1
    assert checked >= 12


def api_accepts(message: Any) -> bool:
    """What POST .../messages takes (functions/route/conversations.py's _message, without its imports)."""
    try:
        parsed = outbound.Message.model_validate(message)
    except ValidationError:
        return False
    return all(asset.path is None for _kind, asset in parsed.assets())


THUMB = {"s3": "assets/t.png"}


@pytest.mark.parametrize("message", [
    "hello", "字" * 682, {"text": "hello"}, {"text": ""}, "", {}, {"text": "a", "image": THUMB}, {"texts": "a"},
    {"image": THUMB}, {"image": "a.png"}, {"image": {"s3": "media/x.png"}}, {"image": {"s3": "assets/"}},
    {"video": THUMB, "file": THUMB}, {"file": {"s3": "assets/a.pdf", "path": "a.pdf"}},
    {"msgmenu": {"items": [{"click": {"id": "1", "content": "yes"}}, {"view": {"url": "https://e.com", "content": "go"}},
                           {"miniprogram": {"appid": "wx1", "pagepath": "p", "content": "mp"}}, {"text": "line"},
                           {"text": {"content": "line", "no_newline": True}}], "head": "h", "tail": "t"}},
    {"msgmenu": {"items": []}}, {"msgmenu": {"items": [{"click": {"id": "1", "content": "a"}, "text": "b"}]}},
    {"msgmenu": {"items": [{"text": "x"}] * 11}}, {"msgmenu": {"items": [{"view": {"url": "ftp://e.com", "content": "x"}}]}},
    {"link": {"title": "t", "url": "https://e.com", "thumb": THUMB}}, {"link": {"title": "t", "url": "https://e.com"}},
    {"link": {"title": "t", "url": "e.com", "thumb": THUMB}}, {"link": {"title": "t" * 129, "url": "https://e.com", "thumb": THUMB}},
    {"miniprogram": {"appid": "wx1", "pagepath": "p", "thumb": THUMB, "title": "mp"}},
    {"miniprogram": {"appid": "", "pagepath": "p", "thumb": THUMB}},
    {"business_card": {"userid": "alice"}}, {"business_card": {"userid": "a" * 65}}, {"business_card": {}},
    {"ca_link": {"link_url": "https://work.weixin.qq.com/ca/cawcde"}}, {"ca_link": {"link_url": "https://e.com/ca/x"}},
])
def test_the_message_schema_takes_what_the_api_takes(message: Any) -> None:
    """Lengths in bytes are not JSON Schema's: the samples keep within ASCII where they test a length."""
    valid = not list(_validator({"$ref": "#/components/schemas/Message"}).iter_errors(message))
    assert valid == api_accepts(message)
