"""The jobs queue worker: long jobs split into tasks (expiry, the tier review and the
birthday greetings by date and shard, tier recalculation by scan segment). Each task is
one record; failures are reported per record and retried, then dead-lettered (JobsDLQ)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.handlers.payloads import ShardTask, parse_task

processor = BatchProcessor(event_type=EventType.SQS)


def task_handler(record: SQSRecord, lambda_context: Any = None) -> None:
    """A malformed body or an unknown job fails the record (and, redelivered in vain, it
    ends in the dead-letter queue)."""
    task = parse_task(record.body)
    if not isinstance(task, ShardTask):
        from chalicelib.handlers.tier_rules import tier_rules_task

        tier_rules_task(task, lambda_context)
    elif task.job == "expiry":
        from chalicelib.handlers.expiry import expiry_task

        expiry_task(task, lambda_context)
    elif task.job == "tier_review":
        from chalicelib.handlers.tiers import tier_review_task

        tier_review_task(task, lambda_context)
    elif task.job == "birthdays":
        from chalicelib.handlers.schedules import birthday_task

        birthday_task(task, lambda_context)
    else:
        raise ValueError(f"unknown job {task.job!r}")


def handle_tasks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=task_handler, processor=processor, context=context
    )
    return dict(response)
