"""Every staff write is audited: a walk over the registered routes (moto).

For every operation `api/http.operation` registered (`OPERATIONS`, what the OpenAPI
document is generated from) that staff may call with a write method, either a case below
calls it with a valid request and finds exactly one new audit entry, with the right
action, actor and role and no personal data; or the route is on EXEMPT, with the reason.
A route added later fails `test_every_staff_write_route_has_an_audit_case_or_an_exemption`
until it writes its entry (or says why it needs none)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from chalicelib.domain.audit import PERSONAL_FIELDS
from chalicelib.domain.tiers import DEFAULT_TIERS
from local.tools import member_or_staff_token
from tests.conftest import auth, unique_phone
from tests.unit.test_transactions_api import purchase_body

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NAME = "审计测试员"  # a member's name: must never reach an entry

# Staff write routes that write no audit entry, and why. Keep this list short.
EXEMPT: dict[tuple[str, str], str] = {}


@dataclass
class Case:
    """A prepared request: `send()` makes the one call under test."""

    send: Callable[[], Any]
    action: str
    role: str
    subject: str
    status: int = 201
    secrets: tuple[str, ...] = ()  # values that must not appear in the entry


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Staff:
    """A staff member with a subject of their own (so the entry names them)."""

    def __init__(self, client: Any, role: str, store: str | None = None) -> None:
        self.client = client
        self.role = role
        self.subject = fresh(f"staff-{role}")
        self.token = member_or_staff_token(role, self.subject, store)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.http.request(
            method,
            path,
            headers={**auth(self.token), "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else b"",
        )

    def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.call(method, path, body)
        assert response.status_code < 300, (path, response.json_body)
        return dict(response.json_body)

    def case(self, method: str, path: str, body: Any, action: str, **kw: Any) -> Case:
        return Case(lambda: self.call(method, path, body), action, self.role, self.subject, **kw)


# ---- setup helpers (through another staff member: their entries are not counted) -------


def _setup(client: Any) -> Staff:
    return Staff(client, "admin")


def _member(client: Any, points: int = 0) -> tuple[str, str]:
    setup = _setup(client)
    phone = unique_phone()
    member = setup.ok("POST", "/v1/members", {"phone": phone, "channel": "app", "name": NAME})
    if points:
        setup.ok(
            "POST",
            f"/v1/admin/members/{member['member_id']}/adjustments",
            {"adjustment_id": fresh("adj"), "points": points, "reason": "setup"},
        )
    return str(member["member_id"]), phone


def _reward(client: Any) -> str:
    reward_id = fresh("rw")
    _setup(client).ok(
        "POST",
        "/v1/admin/rewards",
        {"reward_id": reward_id, "name": "Tote bag", "kind": "gift", "points": 100, "stock": 10},
    )
    return reward_id


def _redemption(client: Any) -> tuple[str, str]:
    member_id, _ = _member(client, points=1000)
    redemption_id = fresh("rd")
    _setup(client).ok(
        "POST",
        f"/v1/members/{member_id}/redemptions",
        {"redemption_id": redemption_id, "reward_id": _reward(client)},
    )
    return member_id, redemption_id


def _template(client: Any) -> str:
    template_id = fresh("tpl")
    _setup(client).ok(
        "POST",
        "/v1/admin/coupon-templates",
        {
            "template_id": template_id,
            "name": "¥10 off",
            "kind": "amount_off",
            "value": 1000,
            "valid_days": 30,
        },
    )
    return template_id


def _store(client: Any) -> str:
    store_id = fresh("s")
    _setup(client).ok(
        "POST",
        "/v1/admin/stores",
        {"store_id": store_id, "dealer_id": "dealer-demo", "name": "Kiosk"},
    )
    return store_id


def _ladder() -> dict[str, Any]:
    return {"tiers": [asdict(t) for t in DEFAULT_TIERS]}


def _no_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.wiring import services

    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: None)


# ---- one case per audited route ----------------------------------------------------------


def register_member(client: Any, mp: pytest.MonkeyPatch) -> Case:
    ops = Staff(client, "ops")
    phone = unique_phone()
    body = {"phone": phone, "channel": "staff", "name": NAME, "store_id": "store-001"}
    return ops.case("POST", "/v1/members", body, "member.register", secrets=(phone, NAME))


def update_member(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, phone = _member(client)
    ops = Staff(client, "ops")
    body = {"name": "新名字", "email": "who@example.com"}
    return ops.case(
        "PATCH",
        f"/v1/members/{member_id}",
        body,
        "member.update",
        status=200,
        secrets=(phone, NAME, "新名字", "who@example.com"),
    )


def post_transaction(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, phone = _member(client)
    ops = Staff(client, "ops")
    return ops.case(
        "POST",
        "/v1/transactions",
        purchase_body(member_id),
        "transaction.purchase",
        secrets=(phone,),
    )


def post_refund(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, _ = _member(client)
    body = purchase_body(member_id)
    _setup(client).ok("POST", "/v1/transactions", body)
    ops = Staff(client, "ops")
    refund = {"refund_id": fresh("rf"), "amount": 1000, "store_id": "store-001"}
    path = f"/v1/transactions/{body['transaction_id']}/refunds"
    return ops.case("POST", path, refund, "transaction.refund")


def post_adjustment(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, _ = _member(client)
    ops = Staff(client, "ops")
    body = {"adjustment_id": fresh("adj"), "points": 50, "reason": "goodwill"}
    return ops.case("POST", f"/v1/admin/members/{member_id}/adjustments", body, "points.adjust")


def put_program(client: Any, mp: pytest.MonkeyPatch) -> Case:
    admin = Staff(client, "admin")
    config = admin.ok("GET", "/v1/admin/program")["config"]
    return admin.case("PUT", "/v1/admin/program", config, "program.update", status=200)


def create_rules(client: Any, mp: pytest.MonkeyPatch) -> Case:
    ops = Staff(client, "ops")
    return ops.case("POST", "/v1/admin/tier-rules", _ladder(), "tier_rules.propose")


def dry_run(client: Any, mp: pytest.MonkeyPatch) -> Case:
    _no_tasks(mp)
    version = _setup(client).ok("POST", "/v1/admin/tier-rules", _ladder())["version"]
    ops = Staff(client, "ops")
    path = f"/v1/admin/tier-rules/{version}/dry-run"
    return ops.case("POST", path, None, "tier_rules.dry_run", status=202)


def apply_rules(client: Any, mp: pytest.MonkeyPatch) -> Case:
    _no_tasks(mp)
    version = _setup(client).ok("POST", "/v1/admin/tier-rules", _ladder())["version"]
    admin = Staff(client, "admin")
    path = f"/v1/admin/tier-rules/{version}/apply"
    return admin.case("POST", path, None, "tier_rules.apply", status=202)


def create_dealer(client: Any, mp: pytest.MonkeyPatch) -> Case:
    body = {"dealer_id": fresh("d"), "name": "East dealer"}
    return Staff(client, "admin").case("POST", "/v1/admin/dealers", body, "dealer.create")


def create_store(client: Any, mp: pytest.MonkeyPatch) -> Case:
    body = {"store_id": fresh("s"), "dealer_id": "dealer-demo", "name": "Kiosk"}
    return Staff(client, "admin").case("POST", "/v1/admin/stores", body, "store.create")


def update_store(client: Any, mp: pytest.MonkeyPatch) -> Case:
    path = f"/v1/admin/stores/{_store(client)}"
    return Staff(client, "admin").case("PATCH", path, {"active": False}, "store.update", status=200)


def issue_key(client: Any, mp: pytest.MonkeyPatch) -> Case:
    path = f"/v1/admin/stores/{_store(client)}/keys"
    return Staff(client, "admin").case("POST", path, None, "store_key.create")


def revoke_key(client: Any, mp: pytest.MonkeyPatch) -> Case:
    store_id = _store(client)
    key = _setup(client).ok("POST", f"/v1/admin/stores/{store_id}/keys")
    path = f"/v1/admin/stores/{store_id}/keys/{key['key_id']}"
    return Staff(client, "admin").case(
        "DELETE", path, None, "store_key.revoke", status=200, secrets=(key["secret"],)
    )


def create_reward(client: Any, mp: pytest.MonkeyPatch) -> Case:
    body = {"reward_id": fresh("rw"), "name": "Mug", "kind": "gift", "points": 300, "stock": 5}
    return Staff(client, "ops").case("POST", "/v1/admin/rewards", body, "reward.create")


def patch_reward(client: Any, mp: pytest.MonkeyPatch) -> Case:
    path = f"/v1/admin/rewards/{_reward(client)}"
    body = {"version": 1, "points": 250}
    return Staff(client, "ops").case("PATCH", path, body, "reward.update", status=200)


def post_redemption(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, phone = _member(client, points=1000)
    body = {"redemption_id": fresh("rd"), "reward_id": _reward(client)}
    path = f"/v1/members/{member_id}/redemptions"
    return Staff(client, "ops").case("POST", path, body, "redemption.create", secrets=(phone,))


def cancel_redemption(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, redemption_id = _redemption(client)
    path = f"/v1/members/{member_id}/redemptions/{redemption_id}/cancel"
    return Staff(client, "ops").case("POST", path, None, "redemption.cancel", status=200)


def post_fulfilment(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, redemption_id = _redemption(client)
    path = f"/v1/admin/members/{member_id}/redemptions/{redemption_id}/fulfilment"
    body = {"status": "shipped", "tracking_no": "SF123456789"}
    return Staff(client, "ops").case(
        "POST", path, body, "redemption.fulfil", status=200, secrets=("SF123456789",)
    )


def create_template(client: Any, mp: pytest.MonkeyPatch) -> Case:
    body = {
        "template_id": fresh("tpl"),
        "name": "¥5 off",
        "kind": "amount_off",
        "value": 500,
        "valid_days": 10,
    }
    return Staff(client, "ops").case(
        "POST", "/v1/admin/coupon-templates", body, "coupon_template.create"
    )


def patch_template(client: Any, mp: pytest.MonkeyPatch) -> Case:
    path = f"/v1/admin/coupon-templates/{_template(client)}"
    body = {"version": 1, "min_spend": 2000}
    return Staff(client, "ops").case("PATCH", path, body, "coupon_template.update", status=200)


def issue_coupon(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, phone = _member(client)
    body = {"issue_id": fresh("iss"), "template_id": _template(client)}
    path = f"/v1/admin/members/{member_id}/coupons"
    return Staff(client, "ops").case("POST", path, body, "coupon.issue", secrets=(phone,))


def redeem_coupon(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, _ = _member(client)
    coupon = _setup(client).ok(
        "POST",
        f"/v1/admin/members/{member_id}/coupons",
        {"issue_id": fresh("iss"), "template_id": _template(client)},
    )
    path = f"/v1/coupons/{coupon['code']}/redeem"
    body = {"transaction_id": fresh("t"), "store_id": "store-001"}
    return Staff(client, "ops").case("POST", path, body, "coupon.redeem", status=200)


def erase_member(client: Any, mp: pytest.MonkeyPatch) -> Case:
    member_id, phone = _member(client, points=30)
    body = {"request_id": fresh("erase"), "reason": "member_request", "ticket": "PIPL-7"}
    path = f"/v1/admin/members/{member_id}/erase"
    return Staff(client, "admin").case(
        "POST", path, body, "member.erase", status=202, secrets=(phone, NAME)
    )


CASES: dict[str, Callable[[Any, pytest.MonkeyPatch], Case]] = {
    f.__name__: f
    for f in (
        register_member,
        update_member,
        post_transaction,
        post_refund,
        post_adjustment,
        put_program,
        create_rules,
        dry_run,
        apply_rules,
        create_dealer,
        create_store,
        update_store,
        issue_key,
        revoke_key,
        create_reward,
        patch_reward,
        post_redemption,
        cancel_redemption,
        post_fulfilment,
        create_template,
        patch_template,
        issue_coupon,
        redeem_coupon,
        erase_member,
    )
}


# ---- the walk ----------------------------------------------------------------------------


def staff_writes() -> dict[str, tuple[str, str]]:
    """Every registered operation staff may call with a write method: handler name ->
    (method, path)."""
    import app  # noqa: F401  (registers every route)
    from chalicelib.api.http import OPERATIONS

    return {
        op.name: (op.method, op.path)
        for op in OPERATIONS
        if op.access.staff and op.method in WRITES
    }


def test_every_staff_write_route_has_an_audit_case_or_an_exemption():
    routes = staff_writes()
    missing = sorted(
        f"{method} {path} ({name})"
        for name, (method, path) in routes.items()
        if name not in CASES and (method, path) not in EXEMPT
    )
    assert not missing, "staff write routes that write no audit entry:\n" + "\n".join(missing)
    # and no case or exemption for a route that is gone
    assert set(CASES) <= set(routes)
    assert set(EXEMPT) <= set(routes.values())


def audit_items() -> dict[tuple[str, str], dict[str, Any]]:
    """Every AUDIT# item in the Program table (a test's scan), by key."""
    from chalicelib.dal.tables import AuditItem

    return {
        (item.pk, item.sk): item.attribute_values
        for item in AuditItem.scan(AuditItem.pk.startswith("AUDIT#"))
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_given_a_staff_write_when_it_succeeds_then_exactly_one_entry_names_the_actor(
    name, seeded, app_client, monkeypatch
):
    case = CASES[name](app_client, monkeypatch)
    before = audit_items()
    response = case.send()
    assert response.status_code == case.status, response.json_body
    new = [item for key, item in audit_items().items() if key not in before]
    assert len(new) == 1, new
    (entry,) = new
    assert entry["action"] == case.action
    assert entry["actor"] == case.subject
    assert entry["role"] == case.role
    for side in ("before", "after"):
        fields = set((entry.get(side) or {}).as_dict()) if entry.get(side) else set()
        assert not fields & PERSONAL_FIELDS, (side, fields)
    text = json.dumps(
        {k: str(v.as_dict() if hasattr(v, "as_dict") else v) for k, v in entry.items()}
    )
    for secret in case.secrets:
        assert secret not in text, secret
