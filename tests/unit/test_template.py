"""Promises the deployed template makes that no emulator can check: who may call what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kefu.secrets import CALLBACK_NAMES, CORP_SECRET
from local.template import Template, TemplateError

TEMPLATE = Template.load(Path(__file__).resolve().parents[2] / "template.yaml", overrides={"WeComCorpId": "ww"})


def http_routes() -> dict[tuple[str, str], dict]:
    routes = {}
    for fn in TEMPLATE.resources("AWS::Serverless::Function").values():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                routes[(props["Method"], props["Path"])] = props
    return routes


def test_stats_and_the_conversation_api_require_iam_and_nothing_else_does() -> None:
    api = TEMPLATE.body["Resources"]["HttpApi"]["Properties"]
    assert api["Auth"]["EnableIamAuthorizer"] is True
    routes = http_routes()
    signed = {("GET", "/stats"), ("GET", "/conversations"), ("GET", "/conversations/{external_userid}"),
              ("POST", "/conversations/{external_userid}/messages"), ("POST", "/conversations/{external_userid}/transfer"),
              ("POST", "/conversations/{external_userid}/end"), ("GET", "/customers/{external_userid}"),
              ("GET", "/customers")}
    assert {key for key, props in routes.items() if props.get("Auth", {}).get("Authorizer") == "AWS_IAM"} == signed
    public = {key for key, props in routes.items() if "Auth" not in props}
    # The sidebar's routes are public to the WeCom client's web view; its reads need the token
    # its OAuth2 sign-in gives (kefu.sidebar), and the page itself holds no data.
    assert public == {("GET", "/callback"), ("POST", "/callback"), ("GET", "/links"), ("OPTIONS", "/links"),
                      ("GET", "/sidebar"), ("POST", "/sidebar/session"), ("GET", "/sidebar/signature"),
                      ("GET", "/sidebar/customer"), ("POST", "/sidebar/upgrade")}
    assert "DefaultAuthorizer" not in api["Auth"]  # would put the public routes behind IAM too


def test_nothing_bills_by_the_hour_by_default() -> None:
    hourly = {"AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::CloudWatch::Dashboard"}
    for logical_id, resource in TEMPLATE.body["Resources"].items():
        if resource["Type"] in hourly:
            condition = resource.get("Condition")
            assert condition and not TEMPLATE.condition(condition), f"{logical_id} is created by default"


def test_every_dead_letter_queue_has_an_alarm() -> None:
    dlqs = {lid for lid, r in TEMPLATE.resources("AWS::SQS::Queue").items() if "DeadLetter" in lid}
    watched = {dim["Value"]["Fn::GetAtt"][0]
               for r in TEMPLATE.resources("AWS::CloudWatch::Alarm").values()
               for dim in r["Properties"].get("Dimensions", [])
               if isinstance(dim["Value"], dict) and "Fn::GetAtt" in dim["Value"]}
    assert dlqs and dlqs <= watched


def _ssm_resources(function: str) -> list[str]:
    policies = TEMPLATE.body["Resources"][function]["Properties"].get("Policies") or []
    found = []
    for policy in policies:
        for statement in (policy.get("Statement") or []) if isinstance(policy, dict) else []:
            if any(action.startswith("ssm:") for action in statement["Action"]):
                resources = statement["Resource"]
                found += [r["Fn::Sub"] if isinstance(r, dict) else r
                          for r in (resources if isinstance(resources, list) else [resources])]
    return found


def test_the_callback_may_read_its_two_secrets_and_never_the_corp_secret() -> None:
    readable = _ssm_resources("CallbackFunction")
    assert sorted(r.rsplit("/", 1)[1] for r in readable) == sorted(CALLBACK_NAMES)
    assert not any(r.endswith("/*") or r.endswith(CORP_SECRET) for r in readable)


def test_a_callback_that_fails_verification_alarms() -> None:
    source = (Path(__file__).resolve().parents[2] / "functions/callback/app.py").read_text()
    metric = next(node.value.value for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "UNVERIFIED_METRIC")
    alarms = [r["Properties"] for r in TEMPLATE.resources("AWS::CloudWatch::Alarm").values()]
    assert any(a.get("MetricName") == metric and a.get("Namespace") == "Kefu" for a in alarms)


def _table_access(function: str) -> list[tuple[set[str], list[str] | None]]:
    """(DynamoDB actions, LeadingKeys patterns or None for the whole table) per statement."""
    found = []
    for policy in TEMPLATE.body["Resources"][function]["Properties"].get("Policies") or []:
        if isinstance(policy, dict) and any(k.startswith("DynamoDB") for k in policy):
            found.append(({"*"}, None))
        for statement in (policy.get("Statement") or []) if isinstance(policy, dict) else []:
            actions = {a for a in statement.get("Action", []) if a.startswith("dynamodb:")}
            if actions:
                leading = (statement.get("Condition") or {}).get("ForAllValues:StringLike", {})
                found.append((actions, leading.get("dynamodb:LeadingKeys")))
    return found


def test_links_and_stats_reach_only_their_own_items() -> None:
    links = _table_access("LinksFunction")
    assert links and all(keys is not None for _, keys in links)
    assert {k for _, keys in links for k in keys or []} == {"link#*", "linkquota#*", "funnel#*", "token#*"}
    stats = _table_access("StatsFunction")
    assert stats and all(keys is not None and not any(k.startswith("token") for k in keys) for _, keys in stats)
    assert all(actions <= {"dynamodb:Query", "dynamodb:GetItem"} for actions, _ in stats)


def test_only_the_route_function_may_publish_events_and_only_to_the_bus_given() -> None:
    for name, fn in TEMPLATE.resources("AWS::Serverless::Function").items():
        text = str(fn["Properties"].get("Policies"))
        if name in ("RouteFunction", "ConversationsFunction", "SidebarFunction"):  # the engine's sends, and offers
            assert "events:PutEvents" in text and "HasEventBus" in text
        else:
            assert "events:PutEvents" not in text, name


# -- the local stack's reading of conditions ---------------------------------------------------------

CONDITIONS = """\
Parameters:
  Bus: {Type: String, Default: ""}
  Hook: {Type: String, Default: ""}
Conditions:
  HasBus: !Not [!Equals [!Ref Bus, ""]]
  HasHook: !And [!Condition HasBus, !Not [!Equals [!Ref Hook, ""]]]
  NoHook: !Not [!Condition HasHook]
  Either: {"Fn::Or": [{"Condition": "HasBus"}, {"Fn::Condition": "HasHook"}]}
  Loop: !Not [!Condition Loop2]
  Loop2: !Condition Loop
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Condition: HasHook
    Properties:
      Tags: !If [HasHook, [{Key: hook, Value: !Ref Hook}], !Ref AWS::NoValue]
  Policy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Deny
            Condition: {Bool: {aws:SecureTransport: false}}
"""


def _conditions_template(tmp_path: Path, **values: str) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(CONDITIONS, encoding="utf-8")
    return Template.load(path, overrides=values)


def test_a_condition_may_name_other_conditions(tmp_path: Path) -> None:
    none = _conditions_template(tmp_path)
    assert (none.condition("HasBus"), none.condition("HasHook"), none.condition("NoHook"), none.condition("Either")) == (
        False, False, True, False)
    bus_only = _conditions_template(tmp_path, Bus="b")
    assert (bus_only.condition("HasHook"), bus_only.condition("NoHook"), bus_only.condition("Either")) == (False, True, True)
    both = _conditions_template(tmp_path, Bus="b", Hook="https://h")
    assert (both.condition("HasHook"), both.condition("NoHook")) == (True, False)
    assert both.resolve(both.body["Resources"]["Queue"]["Properties"]) == {"Tags": [{"Key": "hook", "Value": "https://h"}]}
    assert none.resolve(none.body["Resources"]["Queue"]["Properties"]) == {}


def test_conditions_that_cannot_be_resolved_are_errors_and_an_iam_condition_block_is_not_one(tmp_path: Path) -> None:
    template = _conditions_template(tmp_path)
    with pytest.raises(TemplateError, match="circular condition: Loop -> Loop2 -> Loop"):
        template.condition("Loop")
    with pytest.raises(TemplateError, match="unknown condition 'Nope'"):
        template.resolve({"Fn::If": ["Nope", 1, 2]})
    statement = template.resolve(template.body["Resources"]["Policy"]["Properties"])["PolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": False}}


def test_every_condition_of_the_template_resolves_with_the_defaults() -> None:
    for name in TEMPLATE.body["Conditions"]:
        assert TEMPLATE.condition(name) in (True, False), name
    assert TEMPLATE.condition("HasHelpdeskWebhook") is False  # !And with a !Condition: no event bus by default
