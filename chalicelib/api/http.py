"""The one place where HTTP meets the domain.

`operation(...)` registers a Chalice route and records what it accepts and returns (the
OpenAPI document is generated from those records). Around every view it: checks the
body size, authenticates (bearer JWT or POS signature), counts the caller against its
rate limit (domain/limits.py; a POS before its nonce is spent), authorizes against the
route's `Access`, validates body and query with pydantic, calls the handler, serialises the
response model, and maps every DomainError to the api.md error envelope and status.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from chalice.app import Blueprint, CognitoUserPoolAuthorizer, Request, Response
from pydantic import BaseModel, ValidationError

from chalicelib import errors
from chalicelib.auth import (
    PosReplay,
    Principal,
    bearer_token,
    is_pos_request,
    spend_nonce,
    verify_pos_request,
)
from chalicelib.domain.limits import SCOPES as RATE_SCOPES
from chalicelib.lazy import resolve
from chalicelib.observability import logger

STATUS_BY_ERROR: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.BusinessRuleViolation, 422),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
)
JSON_HEADERS = {"Content-Type": "application/json"}
# A route's request or response model: the class, or "module:Class" (chalicelib/lazy.py)
ModelRef = type[BaseModel] | str | None


def status_for(exc: errors.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def error_response(exc: errors.DomainError) -> Response:
    headers: dict[str, str | list[str]] = dict(JSON_HEADERS)
    retry_after = exc.details.get("retry_after_seconds")
    if isinstance(exc, errors.RateLimited) and isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    return Response(
        body=error_body(exc.code, exc.message, exc.details),
        status_code=status_for(exc),
        headers=headers,
    )


@dataclass(frozen=True)
class Access:
    """Who may call a route. Several may be combined."""

    public: bool = False
    member_self: bool = False  # a member token for the {member_id} in the path
    registrant: bool = False  # a member token not yet bound to a member (self sign-up)
    member: bool = False  # a member token, acting on its own member (no {member_id} in path)
    staff: frozenset[str] = frozenset()
    store: bool = False  # a signed POS request

    def describe(self) -> str:
        parts = []
        if self.public:
            parts.append("anyone")
        if self.member_self:
            parts.append("the member (own data only)")
        if self.member:
            parts.append("a signed-in member (itself)")
        if self.registrant:
            parts.append("an app user signing up")
        if self.staff:
            parts.append("staff (" + ", ".join(sorted(self.staff)) + ")")
        if self.store:
            parts.append("a POS (signed, own store only)")
        return "; ".join(parts)


PUBLIC = Access(public=True)
# Roles (README, Authentication): store_staff act for their own store only; ops run the
# program; admin may do all ops may, and alone hold limits, keys, stores and apply rules.
ALL_STAFF = frozenset({"ops", "admin", "store_staff"})
OPS = frozenset({"ops", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Call:
    """What a handler gets: already authenticated, authorized and validated."""

    principal: Principal | None
    params: dict[str, str]
    body: Any = None
    query: Any = None
    request: Request | None = None


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    name: str
    summary: str
    tags: tuple[str, ...]
    access: Access
    # A model class, or "module:Class" imported on first use (chalicelib/lazy.py)
    body_ref: ModelRef
    query_ref: ModelRef
    response_ref: ModelRef
    status: int
    error_statuses: tuple[int, ...] = field(default_factory=tuple)
    not_writable: frozenset[str] = frozenset()
    # JSON schema of path parameters the handler checks beyond "a non-empty string".
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # What keeps a signed POS request from being replayed on this route (auth.PosReplay).
    pos_replay: PosReplay = PosReplay.NONCE
    # A rate-limit class of its own for a costly or abusable route (domain/limits.py):
    # its requests count there instead of in the caller's general limit.
    rate_class: str | None = None

    @property
    def body(self) -> type[BaseModel] | None:
        return resolve(self.body_ref)  # type: ignore[no-any-return]

    @property
    def query(self) -> type[BaseModel] | None:
        return resolve(self.query_ref)  # type: ignore[no-any-return]

    @property
    def response(self) -> type[BaseModel] | None:
        return resolve(self.response_ref)  # type: ignore[no-any-return]


OPERATIONS: list[Operation] = []
# Every id in a path is a client id (64 characters at most) or one we made (shorter).
MAX_PATH_PARAM = 128

# In AWS, API Gateway checks member and staff tokens against the stage's Cognito user pool
# before the function runs. Chalice wants a literal ARN: this placeholder is replaced by
# the pool's Fn::GetAtt in infra/resources.json. The app verifies every token again
# (chalicelib/auth.py): that is what guards `chalice local`, where Cognito authorizers
# are not emulated, and the routes a POS may call too (its signature covers the body,
# which no authorizer sees), so those routes carry no gateway authorizer.
COGNITO = CognitoUserPoolAuthorizer(
    "LoyaltyUserPool",
    provider_arns=["arn:aws:cognito-idp:cn-north-1:000000000000:userpool/cn-north-1_placeholder"],
)


def operation(
    bp: Blueprint,
    path: str,
    method: str,
    *,
    access: Access,
    summary: str,
    tags: tuple[str, ...],
    body: ModelRef = None,
    query: ModelRef = None,
    response: ModelRef = None,
    status: int = 200,
    error_statuses: tuple[int, ...] = (),
    not_writable: frozenset[str] = frozenset(),
    path_params: Mapping[str, Mapping[str, Any]] | None = None,
    pos_replay: PosReplay = PosReplay.NONCE,
    rate_class: str | None = None,
) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
    def register(handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
        op = Operation(
            path=path,
            method=method,
            name=handler.__name__,
            summary=summary,
            tags=tags,
            access=access,
            body_ref=body,
            query_ref=query,
            response_ref=response,
            status=status,
            error_statuses=error_statuses,
            not_writable=not_writable,
            path_params=dict(path_params or {}),
            pos_replay=pos_replay,
            rate_class=rate_class,
        )
        if pos_replay is not PosReplay.NONCE and not access.store:
            raise ValueError(f"{handler.__name__}: pos_replay is for routes a POS may call")
        if rate_class is not None and (access.public or rate_class not in RATE_SCOPES):
            raise ValueError(f"{handler.__name__}: unknown rate class {rate_class!r}")
        OPERATIONS.append(op)

        @functools.wraps(handler)
        def view(**params: str) -> Response:
            request = bp.current_request
            principal = None
            claimed = False
            try:
                raw = _checked_request(request, params)
                principal = None if access.public else _authenticate(request, params, raw, op)
                call = _prepare(op, request, params, raw, principal)
                claimed = _claim_before_running(op, request, principal, call)
                return _respond(op, handler(call))
            except errors.DomainError as exc:
                # A refused rate leaves the nonce unspent: the same request is retried.
                if not claimed and not isinstance(exc, errors.RateLimited):
                    _after_failure(op, request, principal)
                if status_for(exc) >= 500:
                    logger.warning("dependency unavailable", extra={"code": exc.code})
                return error_response(exc)
            except Exception:
                if not claimed:
                    _after_failure(op, request, principal)
                raise

        gateway_authorizer = None if access.public or access.store else COGNITO
        bp.route(path, methods=[method], authorizer=gateway_authorizer, name=handler.__name__)(view)
        return handler

    return register


def _recorded_answer_pos(op: Operation, principal: Principal | None) -> bool:
    return (
        op.pos_replay is PosReplay.RECORDED_ANSWER
        and principal is not None
        and principal.kind == "store"
    )


def _claim_before_running(
    op: Operation, request: Request, principal: Principal | None, call: Call
) -> bool:
    """A POS request on a RECORDED_ANSWER route that spends the member's points claims its
    nonce now, before anything runs (auth.PosReplay): 401 NONCE_REUSED if it is taken.
    True when it claimed."""
    if not (
        _recorded_answer_pos(op, principal) and getattr(call.body, "spends_member_value", False)
    ):
        return False
    from chalicelib.wiring import services

    if not spend_nonce(request.headers, services().guards):
        raise errors.Unauthenticated("nonce already used", code="NONCE_REUSED")
    return True


def _after_failure(op: Operation, request: Request, principal: Principal | None) -> None:
    """A signed request that did not take effect on a RECORDED_ANSWER route: claim its
    nonce now, so that a replay cannot succeed where it failed (auth.PosReplay). Only
    after the signature verified: a forged request costs no write.

    Best effort: if the claim itself fails (the Runtime table throttles), the till still
    gets the request's own answer, not a 500 for a write it never asked for; the claim is
    logged as missed. README "POS replays" lists what this leaves open."""
    if _recorded_answer_pos(op, principal):
        from chalicelib.wiring import services

        try:
            spend_nonce(request.headers, services().guards)
        except Exception:
            logger.exception("nonce claim after a failed request missed")


def _respond(op: Operation, result: Any) -> Response:
    if isinstance(result, Response):
        return result
    payload = (
        result.model_dump(mode="json", by_alias=True) if isinstance(result, BaseModel) else result
    )
    return Response(body=payload, status_code=op.status, headers=dict(JSON_HEADERS))


def _checked_request(request: Request, params: dict[str, str]) -> bytes:
    """The raw body, once its size and the path ids' lengths are within bounds."""
    from chalicelib.config import get_settings

    raw = _raw_body(request)
    limit = get_settings().max_body_bytes
    if len(raw) > limit:
        raise errors.PayloadTooLarge("request body too large", details={"max_bytes": limit})
    # Path ids become DynamoDB keys (2,048 bytes at most): a longer one is a client's
    # error, refused before it reaches a table and comes back as a 500. Counted in
    # characters as the document states them, decoded: a gateway may pass them still
    # percent-encoded (chalice local does), and 128 encoded characters stay far below
    # the key limit.
    too_long = sorted(
        name for name, value in params.items() if len(unquote(value)) > MAX_PATH_PARAM
    )
    if too_long:
        raise errors.InvalidInput(
            "path parameter too long",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": name, "issue": "too long"} for name in too_long]},
        )
    return raw


def _prepare(
    op: Operation, request: Request, params: dict[str, str], raw: bytes, principal: Principal | None
) -> Call:
    """Authorize the authenticated caller, then validate body and query."""
    if principal is not None:
        authorize(principal, op.access, params)
        if store_scoped(principal):
            _require_active_store(principal)
    body = parse_body(op.body, raw, op.not_writable) if op.body is not None else None
    query = parse_query(op.query, request) if op.query is not None else None
    return Call(principal=principal, params=params, body=body, query=query, request=request)


def _raw_body(request: Request) -> bytes:
    raw = request.raw_body or b""
    return raw.encode() if isinstance(raw, str) else raw


def _authenticate(request: Request, params: dict[str, str], raw: bytes, op: Operation) -> Principal:
    from chalicelib.domain.clock import utc_now
    from chalicelib.wiring import services  # deferred: pulls in pynamodb/botocore

    svc = services()
    headers = request.headers
    if is_pos_request(headers):
        if not op.access.store:
            raise errors.Forbidden("stores may not call this route")
        return verify_pos_request(
            method=request.method,
            path=concrete_path(op.path, params),
            headers=headers,
            body=raw,
            key_lookup=svc.program.store_key,
            nonces=svc.guards,
            now=utc_now(),
            max_skew_seconds=svc.settings.pos_clock_skew_seconds,
            replay=op.pos_replay,
            admit=lambda principal: svc.limiter.admit(principal, op.rate_class),
        )
    token = bearer_token(headers)
    if token is None:
        raise errors.Unauthenticated(
            "send a bearer token or a POS signature", code="MISSING_CREDENTIALS"
        )
    principal = svc.verifier.verify(token)
    svc.limiter.admit(principal, op.rate_class)
    return principal


def authorize(principal: Principal, access: Access, params: Mapping[str, str]) -> None:
    if principal.kind == "member":
        if principal.member_id is None:
            if access.registrant:
                return
            raise errors.Forbidden("register as a member first", code="NOT_A_MEMBER")
        # The same answer whether or not the other member exists: nothing to probe.
        if access.member_self and params.get("member_id") == principal.member_id:
            return
        if access.member and "member_id" not in params:
            return
        raise errors.Forbidden("members may only reach their own data")
    if principal.kind == "staff":
        if not principal.roles & access.staff:
            raise errors.Forbidden("your staff role may not do this", code="ROLE_REQUIRED")
        if store_scoped(principal) and principal.store_id is None:
            # Everything store staff may do is for their store: without one, nothing.
            raise errors.Forbidden("no store is assigned to you", code="STORE_NOT_ASSIGNED")
        return
    if principal.kind == "store" and access.store:
        return
    raise errors.Forbidden("not allowed")


def store_scoped(principal: Principal) -> bool:
    """A POS, or staff whose only role is store_staff: they act for one store only."""
    return principal.kind == "store" or (principal.kind == "staff" and not principal.roles & OPS)


def acting_store(principal: Principal, requested: str | None) -> str:
    """The store a request acts for: see `store_named`; here one is required."""
    store_id = store_named(principal, requested)
    if store_id is None:
        raise errors.InvalidInput(
            "store_id is required",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "store_id", "issue": "required"}]},
        )
    return store_id


def store_named(principal: Principal, requested: str | None) -> str | None:
    """A POS or store staff act for their own store (naming another is 403
    STORE_MISMATCH, naming none means theirs); ops and admin name any store, or none."""
    if store_scoped(principal):
        if requested is not None and requested != principal.store_id:
            raise errors.Forbidden("you do not act for that store", code="STORE_MISMATCH")
        return principal.store_id
    return requested


def _require_active_store(principal: Principal) -> None:
    """A closed (or unknown) store's POS and staff can do nothing. The store is read
    through a 10 s cache, so closing a store takes effect within seconds everywhere."""
    from chalicelib.wiring import services

    assert principal.store_id is not None
    store = services().program.store(principal.store_id)
    if store is None or not store.active:
        raise errors.Forbidden("this store is not active", code="STORE_INACTIVE")


def concrete_path(template: str, params: Mapping[str, str]) -> str:
    path = template
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return path


def parse_body(model: type[BaseModel], raw: bytes, not_writable: frozenset[str]) -> BaseModel:
    if not raw.strip():
        raise errors.InvalidInput("a JSON body is required", code="MALFORMED_JSON")
    try:
        document = json.loads(raw, parse_float=_json_number, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidInput("body is not valid JSON", code="MALFORMED_JSON") from exc
    if not isinstance(document, dict):
        raise errors.InvalidInput("body must be a JSON object", code="VALIDATION_ERROR")
    refused = sorted(set(document) & not_writable)
    if refused:
        raise errors.InvalidInput(
            "these fields cannot be changed here",
            code="FIELD_NOT_WRITABLE",
            details={"fields": refused},
        )
    try:
        # Strict JSON mode: "12" is not an int and 12.5 is not an int; NaN never parses.
        # 12.0 is the integer 12, as JSON Schema (and so the OpenAPI document) says: the
        # body is validated as parsed above, where such numbers became ints.
        return model.model_validate_json(json.dumps(document))
    except ValidationError as exc:
        raise errors.InvalidInput(
            "request does not match the schema",
            code="VALIDATION_ERROR",
            details={"fields": validation_details(exc)},
        ) from exc


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction part or exponent: an int when it is a whole number
    (JSON Schema's "integer" is any number without a fractional part). Only within 2**53,
    where a float is exact; beyond that no integer field accepts it anyway."""
    value = float(text)
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _not_json(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def parse_query(model: type[BaseModel], request: Request) -> BaseModel:
    params = request.query_params
    values = {key: params[key] for key in params} if params is not None else {}
    try:
        return model.model_validate(values, strict=False)
    except ValidationError as exc:
        raise errors.InvalidInput(
            "query does not match the schema",
            code="VALIDATION_ERROR",
            details={"fields": validation_details(exc)},
        ) from exc


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(body)",
            "issue": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
