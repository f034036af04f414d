"""Create the template's tables, queues and buckets in the AWS emulator, and the secrets in SSM."""

from __future__ import annotations

import json
from typing import Any

from local.template import Template

TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes",
              "LocalSecondaryIndexes", "StreamSpecification")
QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds",
                    "ReceiveMessageWaitTimeSeconds", "MaximumMessageSize", "ContentBasedDeduplication",
                    "DeduplicationScope", "FifoThroughputLimit")


def _exists(exc: Exception, *codes: str) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") in codes


def create_tables(template: Template, stack_name: str, session: Any) -> dict[str, str]:
    ddb = session.client("dynamodb")
    created = {}
    for logical_id, resource in template.resources("AWS::DynamoDB::Table").items():
        props = template.resolve(resource.get("Properties") or {})
        name = props.get("TableName") or f"{stack_name}-{logical_id}"
        args = {k: props[k] for k in TABLE_KEYS if k in props}
        if props.get("SSESpecification", {}).get("SSEEnabled"):
            args["SSESpecification"] = {"Enabled": True}
        try:
            ddb.create_table(TableName=name, **args)
        except Exception as exc:
            if not _exists(exc, "ResourceInUseException"):
                raise
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        template.physical[logical_id] = name
        template.attributes[(logical_id, "Arn")] = arn
        created[logical_id] = name
    return created


def create_queues(template: Template, stack_name: str, session: Any) -> dict[str, str]:
    sqs = session.client("sqs")
    queues = template.resources("AWS::SQS::Queue")
    urls = {}
    # First every queue, then the redrive policies, which refer to other queues' ARNs.
    for logical_id, resource in queues.items():
        props = resource.get("Properties") or {}
        fifo = bool(template.resolve(props.get("FifoQueue", False)))
        name = template.resolve(props.get("QueueName")) or f"{stack_name}-{logical_id}" + (".fifo" if fifo else "")
        attributes = {"FifoQueue": "true"} if fifo else {}
        for key in QUEUE_ATTRIBUTES:
            if key in props:
                value = template.resolve(props[key])
                attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        template.physical[logical_id] = url
        template.attributes[(logical_id, "Arn")] = arn
        template.attributes[(logical_id, "QueueName")] = name
        template.attributes[(logical_id, "QueueUrl")] = url
        urls[logical_id] = url
    for logical_id, resource in queues.items():
        redrive = (resource.get("Properties") or {}).get("RedrivePolicy")
        if redrive:
            policy = template.resolve(redrive)
            sqs.set_queue_attributes(QueueUrl=urls[logical_id], Attributes={"RedrivePolicy": json.dumps(policy)})
    return urls


def create_buckets(template: Template, stack_name: str, session: Any) -> dict[str, str]:
    s3 = session.client("s3")
    names = {}
    for logical_id in template.resources("AWS::S3::Bucket"):
        name = f"{stack_name}-{logical_id}".lower()
        try:
            s3.create_bucket(Bucket=name)
        except Exception as exc:
            if not _exists(exc, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        template.physical[logical_id] = name
        template.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        names[logical_id] = name
    return names


def create_keys(template: Template, stack_name: str, session: Any) -> dict[str, str]:
    """The template's KMS keys whose condition holds (provider mode's PermanentCodeKey)."""
    kms = session.client("kms")
    arns = {}
    for logical_id, resource in template.resources("AWS::KMS::Key").items():
        condition = resource.get("Condition")
        if condition and not template.condition(condition):
            continue
        props = template.resolve(resource.get("Properties") or {})
        key = kms.create_key(Description=str(props.get("Description") or f"{stack_name}-{logical_id}"))["KeyMetadata"]
        template.physical[logical_id] = key["KeyId"]
        template.attributes[(logical_id, "Arn")] = key["Arn"]
        arns[logical_id] = key["Arn"]
    return arns


def put_secrets(session: Any, names: dict[str, str], values: dict[str, str]) -> None:
    """Write the WeCom secrets as SecureStrings, exactly where deployed code reads them."""
    ssm = session.client("ssm")
    for key, path in names.items():
        ssm.put_parameter(Name=path, Value=values[key], Type="SecureString", Overwrite=True)


def provision(template: Template, stack_name: str, session: Any) -> dict[str, dict[str, str]]:
    return {
        "tables": create_tables(template, stack_name, session),
        "queues": create_queues(template, stack_name, session),
        "buckets": create_buckets(template, stack_name, session),
        "keys": create_keys(template, stack_name, session),
    }
