"""Create tables and queues from infra/resources.json, the template that deploys them,
so the local stack and the tests cannot drift from production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "resources.json"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"


def load_template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())  # type: ignore[no-any-return]


def resources_of_type(kind: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    tpl = template or load_template()
    return {rid: res for rid, res in tpl["Resources"].items() if res.get("Type") == kind}


def stage_environment(stage: str = "local") -> dict[str, str]:
    """Environment variables of a Chalice stage (top-level merged with the stage's)."""
    config = json.loads(CHALICE_CONFIG.read_text())
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][stage].get("environment_variables", {}))
    return {str(k): str(v) for k, v in env.items()}


def table_names(env: dict[str, str]) -> dict[str, str]:
    """Template logical id -> table name, through each table's Metadata.EnvVar."""
    return {
        rid: env[res["Metadata"]["EnvVar"]]
        for rid, res in resources_of_type("AWS::DynamoDB::Table").items()
    }


def create_table_kwargs(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in properties:
        kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "StreamSpecification" in properties:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    return kwargs


def create_tables(dynamodb: Any, env: dict[str, str]) -> dict[str, str]:
    """Create every template table that does not exist yet; returns logical id -> name."""
    names = table_names(env)
    existing = set(dynamodb.list_tables()["TableNames"])
    tables = resources_of_type("AWS::DynamoDB::Table")
    for rid, name in names.items():
        if name in existing:
            continue
        props = tables[rid]["Properties"]
        dynamodb.create_table(**create_table_kwargs(name, props))
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return names


def queue_names(prefix: str) -> dict[str, str]:
    return {rid: f"{prefix}-{rid}" for rid in resources_of_type("AWS::SQS::Queue")}


def create_queues(sqs: Any, prefix: str, visibility_timeout: int | None = None) -> dict[str, str]:
    """Create the template's queues (DLQs first, then redrive); logical id -> queue URL.
    `visibility_timeout` overrides the template's, so local retries come in seconds."""
    queues = resources_of_type("AWS::SQS::Queue")
    names = queue_names(prefix)
    urls: dict[str, str] = {}

    def ensure(rid: str) -> str:
        if rid in urls:
            return urls[rid]
        props = queues[rid].get("Properties", {})
        attributes: dict[str, str] = {}
        if visibility_timeout is not None:
            attributes["VisibilityTimeout"] = str(visibility_timeout)
        elif "VisibilityTimeout" in props:
            attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
        if "MessageRetentionPeriod" in props:
            attributes["MessageRetentionPeriod"] = str(props["MessageRetentionPeriod"])
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            ensure(target)
            target_arn = sqs.get_queue_attributes(
                QueueUrl=urls[target], AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": target_arn, "maxReceiveCount": redrive["maxReceiveCount"]}
            )
        urls[rid] = sqs.create_queue(QueueName=names[rid], Attributes=attributes)["QueueUrl"]
        return urls[rid]

    for rid in queues:
        ensure(rid)
    return urls


def queue_env(urls: dict[str, str]) -> dict[str, str]:
    """Environment variables the template gives functions for queues (Metadata.EnvVar)."""
    queues = resources_of_type("AWS::SQS::Queue")
    return {
        queues[rid]["Metadata"]["EnvVar"]: url
        for rid, url in urls.items()
        if "EnvVar" in queues[rid].get("Metadata", {})
    }
