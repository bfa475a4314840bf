"""OpenAPI 3.1 from the recorded operations and their pydantic models."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.api.http import MAX_PATH_PARAM, OPERATIONS, Operation
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
    # An empty segment never reaches the route (API Gateway and the local server alike).
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(
                op.path_params.get(
                    name, {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAM}
                )
            ),
        }
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query is not None:
        params.extend(query_parameters(op.query))
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
    if not op.access.public:
        # Every authenticated caller is rate limited (docs/architecture.md, Rate limits).
        spec["responses"]["429"] = {
            "description": STATUS_TEXT[429] + " (RATE_LIMITED): retry after Retry-After seconds",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the caller's window ends",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
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


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The query as the model validates it: each field with its own schema (integer,
    bounds, pattern), or, when the model has a rule across fields (exactly one of
    phone, card, ...), one exploded object parameter carrying that rule, which is how
    OpenAPI says "these query fields, with this constraint between them"."""
    schema = model.model_json_schema(ref_template=REF)
    properties = {name: _query_value(prop) for name, prop in schema.get("properties", {}).items()}
    required = list(schema.get("required", []))
    across: dict[str, Any] = {k: schema[k] for k in ("oneOf", "anyOf") if k in schema}
    if not across:
        params = []
        for name, prop in properties.items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": prop,
            }
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
        return params
    object_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **across,
    }
    if required:
        object_schema["required"] = required
    return [
        {
            "name": model.__name__,
            "in": "query",
            "required": True,
            "style": "form",
            "explode": True,
            "description": "Sent as separate query fields (" + ", ".join(properties) + ")",
            "schema": object_schema,
        }
    ]


def _query_value(prop: dict[str, Any]) -> dict[str, Any]:
    """A query field is absent or a value, never null: drop pydantic's null branch."""
    prop = {k: v for k, v in prop.items() if k not in ("title", "default")} | (
        {"default": prop["default"]} if prop.get("default") is not None else {}
    )
    branches = [b for b in prop.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        prop.update(branches[0])
    elif branches:
        prop["anyOf"] = branches
    return prop
