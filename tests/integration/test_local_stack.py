"""The local stack creates what template.yaml declares, and serves what it routes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from local.template import Template

pytestmark = pytest.mark.integration
TEMPLATE = Template.load(Path(__file__).resolve().parents[2] / "template.yaml", overrides={"WeComCorpId": "wwx"})


def test_ready_line_names_loopback(stack) -> None:
    assert stack.url.startswith("http://127.0.0.1:")
    assert any(line.startswith("kefu local stack ready: http://127.0.0.1:") for line in stack.lines)


@pytest.mark.parametrize("logical_id", sorted(TEMPLATE.resources("AWS::SQS::Queue")))
def test_queues_match_the_template(logical_id: str, stack, clients) -> None:
    props = TEMPLATE.body["Resources"][logical_id]["Properties"]
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.resources[logical_id], AttributeNames=["All"])["Attributes"]
    assert attrs.get("FifoQueue", "false") == str(props.get("FifoQueue", False)).lower()
    if "VisibilityTimeout" in props:
        assert attrs["VisibilityTimeout"] == str(props["VisibilityTimeout"])
    if "RedrivePolicy" in props:
        policy = json.loads(attrs["RedrivePolicy"])
        assert int(policy["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
        target = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert policy["deadLetterTargetArn"].endswith(stack.resources[target].rsplit("/", 1)[1])


@pytest.mark.parametrize("logical_id", sorted(TEMPLATE.resources("AWS::DynamoDB::Table")))
def test_tables_match_the_template(logical_id: str, stack, clients) -> None:
    props = TEMPLATE.body["Resources"][logical_id]["Properties"]
    name = stack.resources[logical_id]
    table = clients.dynamodb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == props["KeySchema"]
    assert {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])} == {
        i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = clients.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
    backups = clients.dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_secrets_are_securestrings_under_the_prefix(stack, clients, simulator) -> None:
    prefix = stack.resources["SecretsPrefix"]
    found = clients.ssm.get_parameters_by_path(Path=prefix, WithDecryption=True)["Parameters"]
    by_name = {p["Name"].rsplit("/", 1)[1]: p for p in found}
    assert set(by_name) == {"corp-secret", "callback-token", "encoding-aes-key"}
    assert all(p["Type"] == "SecureString" for p in by_name.values())
    assert by_name["callback-token"]["Value"] == simulator.token


def test_every_http_route_of_the_template_is_served(stack) -> None:
    for fn in TEMPLATE.resources("AWS::Serverless::Function").values():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                response = httpx.request(event["Properties"]["Method"], stack.url + event["Properties"]["Path"], timeout=5)
                assert response.status_code not in (404, 405, 500), (event, response.text)
