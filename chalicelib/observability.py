"""Powertools singletons. Logger and Metrics are cheap to create; the Tracer pulls in
the X-Ray SDK and a botocore session (~240 ms), so it is built on first use only."""

from __future__ import annotations

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


def tracing_middleware(event: Any, get_response: Any) -> Any:
    """Chalice middleware equivalent to ConvertToMiddleware(tracer.capture_lambda_handler),
    with the tracer created on the first invocation instead of at import."""
    from chalice.app import ConvertToMiddleware

    return ConvertToMiddleware(get_tracer().capture_lambda_handler)(event, get_response)
