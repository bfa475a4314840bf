"""Powertools singletons. Logger and Metrics are cheap to create; the Tracer pulls in
the X-Ray SDK and a botocore session (~240 ms), so it is built on first use only."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "loyalty"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Loyalty", service=SERVICE)


@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


def tracing_enabled() -> bool:
    """X-Ray only inside Lambda and unless switched off (the local stage does)."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not disabled


def tracing_middleware(event: Any, get_response: Any) -> Any:
    """Chalice middleware equivalent to ConvertToMiddleware(tracer.capture_lambda_handler),
    with the tracer created on the first traced invocation instead of at import, and not
    at all where tracing is off (creating a Tracer loads the X-Ray SDK even then)."""
    if not tracing_enabled():
        return get_response(event)
    from chalice.app import ConvertToMiddleware

    return ConvertToMiddleware(get_tracer().capture_lambda_handler)(event, get_response)
