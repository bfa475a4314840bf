"""schemathesis hooks for tests/e2e/test_openapi_conformance.py: who is calling (one role
per run, from the environment), how a POS signs, and which refusals of a schema-valid
request are business rules rather than gaps in the document.

Loaded by `schemathesis run` through SCHEMATHESIS_HOOKS; never collected by pytest.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import schemathesis
from requests.auth import AuthBase

ROLE = os.environ.get("OPENAPI_ROLE", "")  # "staff" | "member" | "pos"
CREDENTIALS: dict[str, Any] = json.loads(os.environ.get("OPENAPI_CREDENTIALS", "{}"))


@dataclass(frozen=True)
class Rejection:
    operation: str  # operationId, or "*" for every operation
    status: int
    code: str  # fnmatch pattern
    reason: str
    field: str | None = None  # VALIDATION_ERROR: only when every field named is this one


# Refusals of schema-valid requests that are business rules: what a JSON schema cannot
# say (this id exists, the member has the points, this client id was used before) or
# cannot say per caller. Anything else a valid request is refused with is a gap in the
# document, and fails the run.
ALLOWED_REJECTIONS: tuple[Rejection, ...] = (
    Rejection("*", 404, "*_NOT_FOUND", "an id, card or phone that names nothing (yet)"),
    Rejection("*", 400, "INVALID_PHONE", "a phone must be a valid mobile number (libphonenumber)"),
    Rejection("*", 409, "IDEMPOTENCY_CONFLICT", "a client id already used with another body"),
    Rejection("*", 409, "MEMBER_EXISTS", "the phone or external id belongs to a member"),
    Rejection("*", 422, "UNKNOWN_STORE", "the store must exist"),
    Rejection(
        "*",
        400,
        "VALIDATION_ERROR",
        "staff name the purchase's store (the field says so; a schema is the same for all)",
        field="store_id",
    ),
    Rejection("update_member", 422, "BIRTHDAY_LOCKED", "a member sets a birthday once"),
    Rejection("*", 422, "INVALID_BIRTHDAY", "a birthday is not in the future"),
    Rejection("*", 400, "INVALID_CURSOR", "only a cursor the server returned is valid"),
    Rejection(
        "post_activity", 400, "UNKNOWN_ACTIVITY", "the program has no rule for this activity type"
    ),
    Rejection("post_activity", 422, "INVALID_REFERRAL", "the referrer exists and is not oneself"),
    Rejection("post_activity", 422, "LIMIT_REACHED", "the activity's limit per period"),
    Rejection("post_adjustment", 422, "INVALID_ADJUSTMENT", "at most the program's max_adjustment"),
    Rejection("put_program", 409, "VERSION_CONFLICT", "send back the version last read"),
    Rejection(
        "list_audit",
        400,
        "VALIDATION_ERROR",
        "the audit range: from not after to, at most 366 days (a schema has no date arithmetic)",
        field="from",
    ),
    Rejection("create_rules", 422, "INVALID_TIER_RULES", "a consistent ladder (ranks, spends)"),
    Rejection("dry_run", 422, "RULES_NOT_DRAFT", "only a draft can be dry-run"),
    Rejection("apply_rules", 422, "RULES_APPLIED", "a version is applied once"),
    Rejection("post_transaction", 422, "TOTAL_MISMATCH", "the total is the sum of the items"),
    Rejection("post_transaction", 422, "INVALID_OCCURRED_AT", "a purchase is not in the future"),
    Rejection("post_transaction", 422, "TRANSACTION_TOO_OLD", "a purchase is recent"),
    Rejection("post_transaction", 422, "INSUFFICIENT_POINTS", "points paid are points held"),
    Rejection("post_transaction", 422, "POINTS_PAYMENT_CAP", "the program's cap on paying"),
    Rejection("post_refund", 422, "UNKNOWN_ITEM", "a refunded item is one of the purchase's"),
    # Member presence (api.md): a code is issued to the member's app, valid once and briefly.
    Rejection(
        "*",
        403,
        "MEMBER_CODE_INVALID",
        "only a code the member's app was issued, unused, unexpired",
    ),
    Rejection(
        "post_transaction",
        403,
        "MEMBER_CODE_REQUIRED",
        "paying with points needs the member's code",
    ),
    # Identity (api.md, Members): what a sign-up token registers is what its sign-in vouches for.
    Rejection("register_member", 403, "PHONE_NOT_VERIFIED", "a sign-up registers its own phone"),
    Rejection(
        "register_member",
        403,
        "EXTERNAL_ID_NOT_VERIFIED",
        "cards and WeChat ids come from POS/staff",
    ),
    # Roles and stores (api.md, Stores and dealers).
    Rejection("create_store", 422, "UNKNOWN_DEALER", "a store belongs to a dealer that exists"),
    Rejection("put_program", 403, "LIMITS_REQUIRE_ADMIN", "only admin changes program limits"),
    Rejection("*", 403, "STORE_INACTIVE", "a closed store's POS and staff can do nothing"),
    Rejection("post_refund", 422, "REFUND_EXCEEDS_PURCHASE", "no more than was bought"),
    # Points mall (api.md, Rewards, coupons, redemptions).
    Rejection("create_reward", 409, "REWARD_EXISTS", "a reward id names one reward"),
    Rejection("create_reward", 422, "COUPON_TEMPLATE_NOT_FOUND", "an active coupon template"),
    Rejection(
        "create_reward",
        400,
        "VALIDATION_ERROR",
        "a coupon reward names its template",
        field="coupon_template_id",
    ),
    Rejection("*", 400, "VALIDATION_ERROR", "valid_to after valid_from", field="valid_to"),
    Rejection("patch_reward", 409, "VERSION_CONFLICT", "send back the version last read"),
    Rejection("post_redemption", 422, "INSUFFICIENT_POINTS", "points spent are points held"),
    Rejection("post_redemption", 422, "OUT_OF_STOCK", "stock left covers the quantity"),
    Rejection("post_redemption", 422, "LIMIT_REACHED", "the reward's limit per member"),
    Rejection("post_redemption", 422, "TIER_REQUIRED", "the reward is for some tiers"),
    Rejection("post_redemption", 422, "REWARD_UNAVAILABLE", "retired or outside its window"),
    Rejection("post_redemption", 403, "MEMBER_CODE_REQUIRED", "a POS needs the member's code"),
    Rejection("cancel_redemption", 409, "REDEMPTION_NOT_CANCELLABLE", "shipped or coupon used"),
    Rejection("post_fulfilment", 409, "INVALID_FULFILMENT", "fulfilment moves forward only"),
    Rejection("post_payment_notification", 401, "*", "signed by the payment provider only"),
    # Coupons (api.md, Rewards, coupons, redemptions).
    Rejection(
        "create_template",
        400,
        "VALIDATION_ERROR",
        "a window ends after it starts",
        field="valid_to",
    ),
    Rejection("patch_template", 409, "VERSION_CONFLICT", "send back the version last read"),
    Rejection(
        "patch_template",
        400,
        "VALIDATION_ERROR",
        "the edit must fit the template's kind"
        " and validity (a cap only on percent off, one validity form)",
    ),
    Rejection("issue_coupon", 422, "TEMPLATE_RETIRED", "a retired template issues nothing"),
    Rejection("issue_coupon", 422, "TEMPLATE_EXPIRED", "a template's window is not over"),
    Rejection("redeem_coupon", 409, "COUPON_USED", "a coupon is used once"),
    Rejection(
        "redeem_coupon", 422, "COUPON_*", "expired, not yet valid, void or owner erased, elsewhere"
    ),
    Rejection("put_program", 422, "UNKNOWN_TEMPLATE", "coupon rules name existing templates"),
    Rejection("put_program", 422, "UNKNOWN_TIER", "coupon rules name tiers of the ladder"),
    # Personal data (api.md, Personal data and audit).
    Rejection("erase_member", 404, "MEMBER_NOT_FOUND", "the run erases a member never registered"),
)


def allowed_rejection(
    operation_id: str, status: int, code: str, fields: list[str]
) -> Rejection | None:
    for rejection in ALLOWED_REJECTIONS:
        if (
            rejection.operation in ("*", operation_id)
            and rejection.status == status
            and fnmatch.fnmatchcase(code, rejection.code)
            and (rejection.field is None or (fields and set(fields) == {rejection.field}))
        ):
            return rejection
    return None


def access_of(method: str, path: str) -> Any:
    import app  # noqa: F401  (registers the operations)
    from chalicelib.api.http import OPERATIONS

    for op in OPERATIONS:
        if op.method == method.upper() and op.path == path:
            return op.access
    raise AssertionError(f"{method} {path} is in the document but not in the app")


def role_may_call(method: str, path: str) -> bool:
    access = access_of(method, path)
    if ROLE == "staff":  # admin: every staff route, and the public ones
        return bool(access.public or "admin" in access.staff)
    if ROLE == "member":
        return bool(access.member_self)
    if ROLE == "pos":
        return bool(access.store)
    raise AssertionError(f"unknown OPENAPI_ROLE {ROLE!r}")


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """Only the operations this role may call: the role matrix has tests of its own."""
    for path, methods in list(raw_schema.get("paths", {}).items()):
        for method in [m for m in methods if m in ("get", "put", "post", "patch", "delete")]:
            if not role_may_call(method, path):
                del methods[method]
        if not any(m in methods for m in ("get", "put", "post", "patch", "delete")):
            del raw_schema["paths"][path]


class PosSignature(AuthBase):
    """Signs the request as sent (method, path, body bytes), as a POS does (README)."""

    def __init__(self, key: dict[str, str]) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from local.pos import key_headers

        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = key_headers(self.key, str(request.method), urlsplit(str(request.url)).path, body)
        headers.pop("Content-Type")
        request.headers.update(headers)
        return request


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    # Members and staff send a bearer token (the run's `headers`); a POS signs each request.
    if ROLE == "pos":
        kwargs["auth"] = PosSignature(CREDENTIALS["pos_key"])
    # Erasing the run's member would leave every later request of the run (and the member
    # role's run) without its member: the erase route is called for a member that never
    # existed (404 MEMBER_NOT_FOUND, a business rule below); its 202 is tested elsewhere
    # (tests/unit/test_privacy_api.py, tests/e2e/test_privacy_over_http.py).
    if case.operation.definition.raw.get("operationId") == "erase_member":
        case.path_parameters = {**(case.path_parameters or {}), "member_id": "mbr_never_registered"}
    # A client knows its store: a valid request names the one store it acts for (a POS's
    # own), so purchases and refunds get past the store check to the ledger. Creating a
    # store names a new one, of the dealer that exists here.
    if case.meta is not None and case.meta.generation.mode.is_positive:
        creating_a_store = case.operation.definition.raw.get("operationId") == "create_store"
        for container in (case.body, case.query):
            if not isinstance(container, dict):
                continue
            if isinstance(container.get("store_id"), str) and not creating_a_store:
                container["store_id"] = CREDENTIALS["store_id"]
            if isinstance(container.get("dealer_id"), str) and creating_a_store:
                container["dealer_id"] = CREDENTIALS["dealer_id"]


@schemathesis.check
def only_business_rules_refuse_valid_requests(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    if response.status_code >= 500:
        return None  # not_a_server_error reports it
    try:
        error = response.json()["error"]
        code = str(error["code"])
        fields = [str(f.get("field")) for f in error.get("details", {}).get("fields", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        code, fields = "(no error envelope)", []
    operation_id = str(case.operation.definition.raw.get("operationId", case.operation.label))
    if allowed_rejection(operation_id, response.status_code, code, fields) is None:
        raise AssertionError(
            f"a request the document allows was refused: {response.status_code} {code} "
            f"({operation_id}); if this is a business rule, add it to ALLOWED_REJECTIONS "
            "with its reason, else make the document say it"
        )
    return True
