"""Message deliveries: powertools idempotency records in the Idempotency table.

One record per message id: IN_PROGRESS while a worker sends it (with an in-progress
expiry at that invocation's deadline), COMPLETED once sent (kept for
`DELIVERY_RECORD_SECONDS`), deleted when the send failed. Built on first use, from the
settings of the moment (never at import: Chalice sets a stage's variables only while a
function runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.config import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer


def delivery_store(settings: Settings) -> DynamoDBPersistenceLayer:
    """The persistence layer on the stage's Idempotency table. The boto3 client follows
    AWS_ENDPOINT_URL_DYNAMODB, so the same code runs on DynamoDB Local."""
    import boto3
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table,
        boto3_client=boto3.client("dynamodb", region_name=settings.region),
    )
