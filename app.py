"""Chalice entry point: middleware, blueprints, authorizer and event-handler shims only.

Importing this module is every Lambda's cold start and what `chalice package` runs, so
it reads no settings and touches no table: repositories are built on first use
(chalicelib/wiring.py), and event handlers import their modules when first called.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from chalice.app import Chalice, ConvertToMiddleware, DynamoDBEvent, Response, SQSEvent

from chalicelib.api import (
    audit,
    coupons,
    members,
    points,
    privacy,
    program,
    rewards,
    stores,
    tier_rules,
    transactions,
)
from chalicelib.api.http import error_body
from chalicelib.observability import logger, metrics, tracing_middleware

app = Chalice(app_name="loyalty")
app.experimental_feature_flags.update(["BLUEPRINTS"])

app.register_middleware(
    ConvertToMiddleware(
        functools.partial(
            logger.inject_lambda_context, correlation_id_path=correlation_paths.API_GATEWAY_REST
        )
    ),
    "http",
)
for _kind in ("dynamodb", "sqs", "scheduled"):
    app.register_middleware(ConvertToMiddleware(logger.inject_lambda_context), _kind)
app.register_middleware(tracing_middleware)
app.register_middleware(ConvertToMiddleware(metrics.log_metrics))


CHALICE_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


@app.middleware("http")
def error_envelope(event: Any, get_response: Any) -> Response:
    """Errors Chalice raises itself (unsupported media type, an unhandled exception)
    get the same envelope as ours, and every response carries the request id."""
    response: Response = get_response(event)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        if response.status_code >= 500:
            response.body = error_body("INTERNAL_ERROR", "an internal error occurred")
        else:
            code = CHALICE_ERROR_CODES.get(response.status_code, "BAD_REQUEST")
            response.body = error_body(code, str(body.get("Message", "")))
        response.headers["Content-Type"] = "application/json"
    request_id = event.context.get("requestId") if isinstance(event.context, dict) else None
    if request_id:
        response.headers["X-Request-Id"] = request_id
    return response


app.register_blueprint(program.bp)
app.register_blueprint(members.bp)
app.register_blueprint(points.bp)
app.register_blueprint(transactions.bp)
app.register_blueprint(tier_rules.bp)
app.register_blueprint(stores.bp)
app.register_blueprint(rewards.bp)
app.register_blueprint(coupons.bp)
app.register_blueprint(audit.bp)
app.register_blueprint(privacy.bp)


# ---- event handlers: thin shims; the work lives in chalicelib/handlers -----------------

# Chalice needs a literal stream ARN; infra/resources.json wires the real one with
# Fn::GetAtt and adds ReportBatchItemFailures, which Chalice never emits itself.
MEMBERS_STREAM_PLACEHOLDER = (
    "arn:aws:dynamodb:cn-north-1:000000000000:table/members/stream/1970-01-01T00:00:00.000"
)


@app.on_dynamodb_record(stream_arn=MEMBERS_STREAM_PLACEHOLDER, batch_size=100)
def on_member_stream(event: DynamoDBEvent) -> dict[str, Any]:
    from chalicelib.handlers.member_stream import handle

    return handle(event.to_dict(), event.context)


# Placeholder ARN likewise, replaced by Fn::GetAtt of the template's queue.
@app.on_sqs_message(
    queue_arn="arn:aws:sqs:cn-north-1:000000000000:loyalty-messages-placeholder", batch_size=10
)
def on_message(event: SQSEvent) -> dict[str, Any]:
    from chalicelib.handlers.messages import handle

    return handle(event.to_dict(), event.context)


@app.on_sqs_message(
    queue_arn="arn:aws:sqs:cn-north-1:000000000000:loyalty-jobs-placeholder", batch_size=10
)
def on_job_task(event: SQSEvent) -> dict[str, Any]:
    from chalicelib.handlers.jobs import handle_tasks

    return handle_tasks(event.to_dict(), event.context)


# 16:05 UTC is 00:05 in Asia/Shanghai: the run expires what was valid through yesterday.
@app.schedule("cron(5 16 * * ? *)")
def points_expiry(event: Any) -> dict[str, Any]:
    from chalicelib.handlers.expiry import run_points_expiry

    return run_points_expiry(event.to_dict())


# 02:05 UTC is 10:05 in Asia/Shanghai: reminders go out in the morning, not at night.
@app.schedule("cron(5 2 * * ? *)")
def expiry_reminders(event: Any) -> dict[str, Any]:
    from chalicelib.handlers.expiry import run_expiry_reminders

    return run_expiry_reminders(event.to_dict())


# 16:10 UTC is 00:10 in Asia/Shanghai: members whose tier year ends today are reviewed.
@app.schedule("cron(10 16 * * ? *)")
def tier_review(event: Any) -> dict[str, Any]:
    from chalicelib.handlers.tiers import run_tier_review

    return run_tier_review(event.to_dict())


# 16:05 UTC is 00:05 in Asia/Shanghai, the program's day.
@app.schedule("cron(5 16 * * ? *)")
def birthday_greetings(event: Any) -> dict[str, Any]:
    from chalicelib.handlers.schedules import run_birthday_greetings

    return run_birthday_greetings(event.to_dict())


# Every minute: points + cash redemptions whose payment window ended give back their
# points and stock (a member waits at most a minute past the window for them).
@app.schedule("rate(1 minute)")
def release_payment_holds(event: Any) -> dict[str, Any]:
    from chalicelib.handlers.payment_holds import run_release

    return run_release(event.to_dict())
