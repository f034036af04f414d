"""Promises the deployed template makes that no emulator can check: who may call what."""

from __future__ import annotations

from pathlib import Path

from local.template import Template

TEMPLATE = Template.load(Path(__file__).resolve().parents[2] / "template.yaml", overrides={"WeComCorpId": "ww"})


def http_routes() -> dict[tuple[str, str], dict]:
    routes = {}
    for fn in TEMPLATE.resources("AWS::Serverless::Function").values():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                routes[(props["Method"], props["Path"])] = props
    return routes


def test_stats_requires_iam_and_nothing_else_does() -> None:
    api = TEMPLATE.body["Resources"]["HttpApi"]["Properties"]
    assert api["Auth"]["EnableIamAuthorizer"] is True
    routes = http_routes()
    assert routes[("GET", "/stats")]["Auth"]["Authorizer"] == "AWS_IAM"
    public = {key for key, props in routes.items() if "Auth" not in props}
    assert public == {("GET", "/callback"), ("POST", "/callback"), ("GET", "/links"), ("OPTIONS", "/links")}
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
