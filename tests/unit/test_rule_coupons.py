"""Rule coupons (program `coupon_rules`): the welcome pack, the first purchase, a move up
to a tier (from the members stream, as Lambda delivers its records) and the birthday
(from the birthday job), each once per member and occasion, a redelivery issuing nothing
new; a retired or missing template is logged and counted, never a failed record."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.dal.coupons import DynamoCouponRepository
from chalicelib.domain.expiry import shard_of
from chalicelib.domain.program import CouponRules
from chalicelib.handlers import member_stream
from chalicelib.handlers.payloads import ShardTask
from chalicelib.wiring import services
from tests.conftest import auth, token_for
from tests.helpers import Pos, stream_record
from tests.unit.test_coupons_api import create_template, send
from tests.unit.test_transactions_api import error_code, purchase_body, register


@pytest.fixture
def quiet(seeded, monkeypatch) -> None:
    """No bus or queue in these tests: events and messages go nowhere."""
    monkeypatch.setattr(services().events, "publish", lambda events: None)
    monkeypatch.setattr(services().messages, "send", lambda message: None)
    monkeypatch.setattr(services().messages, "send_many", lambda batch: None)


def set_rules(**rules: Any) -> None:
    program = services().program
    config = program.config(fresh=True)
    program.save_config(
        replace(config, coupon_rules=CouponRules(**rules)), expected_version=config.version
    )


def raw_item(pk: str, sk: str) -> dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", region_name=services().settings.region)
    return dict(
        client.get_item(
            TableName=services().settings.members_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}
        )["Item"]
    )


def items_under(pk: str, prefix: str) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client("dynamodb", region_name=services().settings.region)
    return list(
        client.query(
            TableName=services().settings.members_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":p": {"S": prefix}},
        )["Items"]
    )


def deliver(*images: dict[str, Any]) -> dict[str, Any]:
    return dict(
        member_stream.handle({"Records": [stream_record("INSERT", i) for i in images]}, None)
    )


def coupons_of(member_id: str) -> list[Any]:
    return DynamoCouponRepository().member_coupons(member_id, 100, None)[0]


def test_given_a_welcome_rule_when_a_registration_streams_twice_then_one_welcome_coupon(
    quiet, app_client
):
    tpl = create_template(app_client)["template_id"]
    set_rules(welcome=(tpl,))
    member_id = register(app_client, token_for(None, "ops"))
    image = raw_item(f"MEMBER#{member_id}", "MEMBER")

    assert deliver(image) == {"batchItemFailures": []}
    assert deliver(image) == {"batchItemFailures": []}  # redelivered

    coupons = coupons_of(member_id)
    assert [(c.template_id, c.source, c.source_id) for c in coupons] == [
        (tpl, "rule", f"welcome-{tpl}")
    ]
    listed = app_client.http.get(
        f"/v1/members/{member_id}/coupons", headers=auth(token_for(member_id))
    ).json_body["coupons"]
    assert [c["status"] for c in listed] == ["active"]


def test_given_a_phone_registered_before_when_its_new_member_streams_then_no_welcome_coupon(
    quiet, app_client
):
    """Once per phone ever, like the sign-up bonus: a member erased and registered again
    (first_registration false) gets no second welcome coupon."""
    tpl = create_template(app_client)["template_id"]
    set_rules(welcome=(tpl,))
    member_id = register(app_client, token_for(None, "ops"))
    image = raw_item(f"MEMBER#{member_id}", "MEMBER")
    image["first_registration"] = {"BOOL": False}

    assert deliver(image) == {"batchItemFailures": []}

    assert coupons_of(member_id) == []


def test_given_a_retired_or_missing_welcome_template_when_a_registration_streams_then_no_coupon_and_no_failure(
    quiet, app_client
):
    retired = create_template(app_client)["template_id"]
    kept = create_template(app_client)["template_id"]
    set_rules(welcome=(retired, "tpl-gone", kept))
    path = f"/v1/admin/coupon-templates/{retired}"
    assert send(app_client, "PATCH", path, {"version": 1, "status": "retired"}).status_code == 200
    member_id = register(app_client, token_for(None, "ops"))

    assert deliver(raw_item(f"MEMBER#{member_id}", "MEMBER")) == {"batchItemFailures": []}

    assert [c.template_id for c in coupons_of(member_id)] == [kept]


def test_given_first_purchase_and_gold_rules_when_a_big_first_purchase_streams_then_each_coupon_once(
    quiet, app_client, store_key
):
    first = create_template(app_client)["template_id"]
    gold = create_template(app_client, kind="percent_off", value=15, max_off=5000)["template_id"]
    set_rules(first_purchase=(first,), tier_upgrade={"gold": (gold,)})
    member_id = register(app_client, token_for(None, "ops"))
    body = purchase_body(
        member_id,
        items=[{"sku": "watch", "category": "general", "quantity": 1, "unit_price": 520_000}],
        total=520_000,
    )
    bought = Pos(app_client, store_key).send("POST", "/v1/transactions", body)
    assert bought.status_code == 201, bought.json_body
    record = raw_item(f"TXN#store-001#{body['transaction_id']}", "TXN")

    assert deliver(record) == {"batchItemFailures": []}  # first purchase; crosses gold
    assert deliver(record) == {"batchItemFailures": []}  # redelivered
    history = items_under(f"MEMBER#{member_id}", "TIER#")
    assert len(history) == 1
    assert deliver(history[0]) == {"batchItemFailures": []}  # the upgrade
    assert deliver(history[0]) == {"batchItemFailures": []}  # redelivered

    coupons = {c.template_id: c for c in coupons_of(member_id)}
    assert set(coupons) == {first, gold}
    assert coupons[first].source_id == f"first-purchase-{first}"
    entry = history[0]["sk"]["S"].removeprefix("TIER#")
    assert coupons[gold].source_id == f"tier-{entry}-{gold}"
    assert coupons[gold].terms.max_off == 5000

    # a second purchase is no first purchase: nothing more
    again = purchase_body(member_id)
    assert Pos(app_client, store_key).send("POST", "/v1/transactions", again).status_code == 201
    deliver(raw_item(f"TXN#store-001#{again['transaction_id']}", "TXN"))
    assert len(coupons_of(member_id)) == 2


def test_given_a_move_down_when_its_tier_change_streams_then_no_upgrade_coupon(quiet, app_client):
    tpl = create_template(app_client)["template_id"]
    set_rules(tier_upgrade={"member": (tpl,), "gold": (tpl,)})
    member_id = register(app_client, token_for(None, "ops"))
    image = {
        "pk": {"S": f"MEMBER#{member_id}"},
        "sk": {"S": "TIER#01JZZZZZZZZZZZZZZZZZZZZZZZ"},
        "kind": {"S": "tier_change"},
        "member_id": {"S": member_id},
        "from_tier": {"S": "gold"},
        "to_tier": {"S": "member"},
        "reason": {"S": "downgrade"},
        "qualifying_spend": {"N": "0"},
        "created_at": {"S": "2026-03-01T12:00:00.000Z"},
    }
    assert deliver(image) == {"batchItemFailures": []}
    assert coupons_of(member_id) == []


def test_given_a_birthday_rule_when_the_birthday_task_runs_twice_then_one_coupon_that_year(
    quiet, app_client
):
    from chalicelib.handlers.schedules import birthday_task

    tpl = create_template(app_client)["template_id"]
    set_rules(birthday=(tpl,))
    member_id = register(app_client, token_for(None, "ops"), birthday="1990-05-20")
    task = ShardTask(job="birthdays", date=date(2026, 5, 20), shard=shard_of(member_id))

    birthday_task(task)
    birthday_task(task)  # redelivered

    coupons = coupons_of(member_id)
    assert [(c.template_id, c.source_id) for c in coupons] == [(tpl, f"birthday-2026-{tpl}")]
    assert coupons[0].issued_at.date() == datetime.now(UTC).date()


def test_given_coupon_rules_when_ops_put_the_program_then_unknown_templates_or_tiers_are_422(
    quiet, app_client
):
    tpl = create_template(app_client)["template_id"]
    staff = auth(token_for(None, "ops"))
    config = app_client.http.get("/v1/admin/program", headers=staff).json_body["config"]
    assert config["coupon_rules"] == {
        "welcome": [],
        "first_purchase": [],
        "birthday": [],
        "tier_upgrade": {},
    }

    def put(rules: dict[str, Any]) -> Any:
        return app_client.http.put(
            "/v1/admin/program", headers=staff, body=json.dumps({**config, "coupon_rules": rules})
        )

    unknown = put({"welcome": [tpl, "tpl-nope"]})
    assert (unknown.status_code, error_code(unknown)) == (422, "UNKNOWN_TEMPLATE")
    assert unknown.json_body["error"]["details"] == {"template_ids": ["tpl-nope"]}
    tier = put({"tier_upgrade": {"obsidian": [tpl]}})
    assert (tier.status_code, error_code(tier)) == (422, "UNKNOWN_TIER")
    malformed = put({"welcome": ["not an id"]})
    assert (malformed.status_code, error_code(malformed)) == (400, "VALIDATION_ERROR")
    saved = put({"welcome": [tpl], "tier_upgrade": {"gold": [tpl]}})
    assert saved.status_code == 200, saved.json_body
    assert saved.json_body["config"]["coupon_rules"]["welcome"] == [tpl]
    assert services().program.config(fresh=True).coupon_rules.tier_upgrade == {"gold": (tpl,)}


def test_given_the_demo_seed_with_rules_when_a_member_registers_then_the_welcome_coupon(
    quiet, app_client
):
    from local.seed import seed

    seed(demo_rules=True)
    seed(demo_rules=True)  # again: the same templates and rules
    assert services().program.config(fresh=True).coupon_rules.welcome == ("tpl-welcome-10",)
    member_id = register(app_client, token_for(None, "ops"))
    assert deliver(raw_item(f"MEMBER#{member_id}", "MEMBER")) == {"batchItemFailures": []}
    [coupon] = coupons_of(member_id)
    assert (coupon.template_id, coupon.terms.min_spend) == ("tpl-welcome-10", 10000)
