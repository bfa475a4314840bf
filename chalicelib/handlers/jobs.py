"""The jobs queue worker: long jobs split into tasks (expiry, the tier review and the
birthday greetings by date and shard, tier recalculation by scan segment). Each task is
one record; failures are reported per record and retried, then dead-lettered (JobsDLQ)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

processor = BatchProcessor(event_type=EventType.SQS)


def task_handler(record: SQSRecord, lambda_context: Any = None) -> None:
    job = json.loads(record.body).get("job")
    if job == "expiry":
        from chalicelib.handlers.expiry import expiry_task

        expiry_task(record, lambda_context)
    elif job == "tier_rules":
        from chalicelib.handlers.tier_rules import tier_rules_task

        tier_rules_task(record, lambda_context)
    elif job == "tier_review":
        from chalicelib.handlers.tiers import tier_review_task

        tier_review_task(record, lambda_context)
    elif job == "birthdays":
        from chalicelib.handlers.schedules import birthday_task

        birthday_task(record, lambda_context)
    else:
        raise ValueError(f"unknown job {job!r}")


def handle_tasks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=task_handler, processor=processor, context=context
    )
    return dict(response)
