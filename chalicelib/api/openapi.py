"""OpenAPI 3.1 from the recorded operations and their pydantic models."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.api.http import OPERATIONS, Operation
from chalicelib.models.common import ErrorResponse

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    400: "Malformed request or invalid field (VALIDATION_ERROR, MALFORMED_JSON, ...)",
    401: "Missing or invalid credentials",
    403: "Credentials valid, but not allowed",
    404: "Not found",
    409: "Conflict (MEMBER_EXISTS, IDEMPOTENCY_CONFLICT)",
    413: "Body too large",
    422: "Valid input the program's rules refuse",
    429: "Rate limited",
}


def _collect_models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorResponse": ErrorResponse}
    for op in OPERATIONS:
        for model in (op.body, op.response, op.query):
            if model is not None:
                seen[model.__name__] = model
    return list(seen.values())


@lru_cache(maxsize=4)
def build_openapi(version: str) -> dict[str, Any]:
    models = _collect_models()
    keyed, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    refs = {m: keyed[(m, "validation")]["$ref"] for m in models}
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loyalty API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "posSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Signature",
                    "description": (
                        "HMAC-SHA256 over METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(sha256(body)) "
                        "with X-Store-Id, X-Key-Id, X-Timestamp and X-Nonce headers"
                    ),
                },
            },
        },
    }


def _operation(op: Operation, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": list(op.tags),
        "description": f"Who may call: {op.access.describe()}.",
        "responses": {},
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query is not None:
        for name, field in op.query.model_fields.items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": field.is_required(),
                    "schema": {"type": "string"},
                }
            )
    if params:
        spec["parameters"] = params
    if op.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": refs[op.body]}}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": refs[op.response]}}}
    spec["responses"][str(op.status)] = ok
    for status in op.error_statuses:
        spec["responses"][str(status)] = {
            "description": STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": refs[ErrorResponse]}}},
        }
    security: list[dict[str, list[str]]] = []
    if not op.access.public:
        if op.access.member_self or op.access.staff or op.access.registrant:
            security.append({"bearer": []})
        if op.access.store:
            security.append({"posSignature": []})
    if security:
        spec["security"] = security
    return spec
