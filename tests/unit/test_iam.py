"""Each Lambda function's role allows what its code does, and no more.

Every function runs here on moto the way AWS runs it (through its app.py entry point,
with Lambda-shaped events): HTTP requests through Chalice's test client, the members
stream fed with the items the table receives, the queues drained into their workers,
schedules fired at chosen moments. tests/iam_check.py records every AWS call with the
function that made it; each tour asserts the calls happened and that the function's
role in infra/resources.json allows every one. The last tour test takes every tour's
calls (running those not run before it) and asserts each line of infra/iam.py was
needed by some call.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.dal.senders import LogSender
from chalicelib.domain.clock import program_date
from chalicelib.handlers import expiry as expiry_handler
from chalicelib.handlers import messages
from chalicelib.handlers import tier_rules as tier_rules_handler
from infra import gen_template, iam
from local.pipeline import LambdaContext, scheduled_event, sqs_event_record
from tests import iam_check
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos, credit, stream_record

DAYTIME = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
NIGHT = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
SIGN_IN_REGION = "ap-east-1"  # Cognito user pools: none in the China regions


class World:
    """The deployed shape on moto: tables, queues and bus named in the environment as
    the template names them, and a synchronous stand-in for Lambda's triggers."""

    def __init__(
        self,
        client: Any,
        staff: str,
        pos: Pos,
        region: str,
        urls: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import boto3

        self.client, self.staff, self.pos = client, staff, pos
        self.region, self.urls, self.monkeypatch = region, urls, monkeypatch
        self.ddb = boto3.client("dynamodb", region_name=region)
        self.sqs = boto3.client("sqs", region_name=region)
        self.streamed: set[tuple[str, str]] = set()
        self.failures: list[str] = []

    # ---- Lambda's side ---------------------------------------------------------------

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

        import app as app_module
        from chalicelib.wiring import services

        # Each function runs in containers of its own: none finds the program's rules in
        # a cache another function filled, so each reads what it uses.
        services().program._cache.clear()
        try:
            response = getattr(app_module, name)(event, LambdaContext(name))
        except BatchProcessingError:  # every record failed: Lambda retries the batch
            self.failures += [r.get("messageId", "") for r in event["Records"]]
            return None
        if isinstance(response, dict):
            self.failures += [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
        return response

    def schedule(self, name: str, at: datetime) -> Any:
        return self.invoke(name, scheduled_event(name, at, self.region))

    def stream(self) -> int:
        """Deliver every item the members table received since the last call as an
        INSERT record (what the handlers act on), in batches like the trigger's."""
        table = os.environ["MEMBERS_TABLE"]
        items = [
            item
            for page in self.ddb.get_paginator("scan").paginate(TableName=table)
            for item in page["Items"]
        ]
        new = [i for i in items if (i["pk"]["S"], i["sk"]["S"]) not in self.streamed]
        for start in range(0, len(new), 100):
            records = [stream_record("INSERT", item) for item in new[start : start + 100]]
            self.invoke("on_member_stream", {"Records": records})
        self.streamed.update((i["pk"]["S"], i["sk"]["S"]) for i in new)
        return len(new)

    def drain(self, queue_id: str, name: str) -> int:
        url, arn = self.urls[queue_id], f"arn:aws:sqs:{self.region}:123456789012:{queue_id}"
        delivered = 0
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            if not got:
                return delivered
            records = [sqs_event_record(dict(m), arn, self.region) for m in got]
            before = len(self.failures)
            self.invoke(name, {"Records": records})
            failed = set(self.failures[before:])
            for message in got:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            delivered += len(got)

    def settle(self) -> None:
        """Run the triggers until nothing is left to deliver."""
        for _ in range(20):
            moved = (
                self.stream()
                + self.drain("JobsQueue", "on_job_task")
                + self.drain("MessagesQueue", "on_message")
            )
            if not moved:
                return
        raise AssertionError("the pipeline did not settle")

    # ---- clients' side ---------------------------------------------------------------

    def register(self, **fields: Any) -> str:
        body = {"phone": unique_phone(), "channel": "app", "name": "Li", **fields}
        response = self.client.http.post(
            "/v1/members", headers=auth(self.staff), body=json.dumps(body)
        )
        assert response.status_code == 201, response.json_body
        return str(response.json_body["member_id"])

    def buy(self, member_id: str, amount: int, transaction_id: str | None = None) -> str:
        transaction_id = transaction_id or f"t-{uuid.uuid4().hex[:12]}"
        response = self.pos.send(
            "POST",
            "/v1/transactions",
            {
                "transaction_id": transaction_id,
                "store_id": "store-001",
                "member_id": member_id,
                "occurred_at": datetime.now(UTC).isoformat(),
                "items": [
                    {"sku": "watch", "category": "general", "quantity": 1, "unit_price": amount}
                ],
                "total": amount,
            },
        )
        assert response.status_code == 201, response.json_body
        return transaction_id

    def coupon_template(self) -> str:
        template_id = f"tpl-{uuid.uuid4().hex[:8]}"
        body = {"template_id": template_id, "name": "¥10", "kind": "amount_off", "value": 1000}
        response = self.client.http.post(
            "/v1/admin/coupon-templates",
            headers=auth(self.staff),
            body=json.dumps({**body, "valid_days": 30}),
        )
        assert response.status_code == 201, response.json_body
        return template_id

    def coupon_rules(self, **rules: Any) -> None:
        staff = auth(self.staff)
        config = self.client.http.get("/v1/admin/program", headers=staff).json_body["config"]
        saved = self.client.http.put(
            "/v1/admin/program", headers=staff, body=json.dumps({**config, "coupon_rules": rules})
        )
        assert saved.status_code == 200, saved.json_body

    def balance(self, member_id: str) -> int:
        response = self.client.http.get(
            f"/v1/members/{member_id}/points", headers=auth(token_for(member_id))
        )
        assert response.status_code == 200, response.json_body
        return int(response.json_body["balance"])

    def member_item(self, member_id: str) -> dict[str, Any]:
        item = self.ddb.get_item(
            TableName=os.environ["MEMBERS_TABLE"],
            Key={"pk": {"S": f"MEMBER#{member_id}"}, "sk": {"S": "MEMBER"}},
            ConsistentRead=True,
        )["Item"]
        return {str(k): next(iter(dict(v).values())) for k, v in item.items()}

    def erase_with_sign_in(self, admin: dict[str, str]) -> None:
        """A member who signed up in the app (a user of a user pool shaped like the
        template's, on moto) erased by an admin: the API deletes the user. The template
        names the pool to every function (COGNITO_USER_POOL_ID); this stage signs its own
        tokens, so the pool is the stage's only for the erasure."""
        import boto3

        from chalicelib import wiring
        from chalicelib.dal.sign_ins import CognitoSignIns
        from local.tools import signed_token

        cognito = boto3.client("cognito-idp", region_name=SIGN_IN_REGION)
        pool_id = cognito.create_user_pool(PoolName="members", UsernameAttributes=["phone_number"])[
            "UserPool"
        ]["Id"]
        phone = unique_phone()
        user = cognito.admin_create_user(UserPoolId=pool_id, Username=phone)["User"]
        sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
        token = signed_token({"sub": sub, "phone_number": phone, "phone_number_verified": True})
        signed_up = self.client.http.post(
            "/v1/members",
            headers=auth(token),
            body=json.dumps({"phone": phone, "channel": "app", "name": "Li"}),
        )
        assert signed_up.status_code == 201, signed_up.json_body
        with self.monkeypatch.context() as stage:
            stage.setenv("COGNITO_USER_POOL_ID", pool_id)
            stage.setattr(
                wiring, "sign_in_accounts", lambda: CognitoSignIns(pool_id, SIGN_IN_REGION)
            )
            erased = self.client.http.post(
                f"/v1/admin/members/{signed_up.json_body['member_id']}/erase",
                headers=admin,
                body=json.dumps({"request_id": "erase-app-1", "reason": "member_request"}),
            )
        assert erased.status_code == 202, erased.json_body
        assert cognito.list_users(UserPoolId=pool_id)["Users"] == []

    def credit(self, member_id: str, points: int, earned_at: datetime) -> None:
        """Points earned at `earned_at` (so their lot expires 12 months on), as a test
        sets the scene: outside every function."""
        credit(member_id, points, earned_at)


@pytest.fixture
def world(seeded, aws_env, app_client, staff_token, store_key, monkeypatch) -> World:
    import boto3

    from chalicelib.wiring import reset_services
    from local.infra import create_queues

    region = aws_env["AWS_REGION"]
    urls = create_queues(boto3.client("sqs", region_name=region), "iam")
    monkeypatch.setenv("MESSAGES_QUEUE_URL", urls["MessagesQueue"])
    monkeypatch.setenv("JOBS_QUEUE_URL", urls["JobsQueue"])
    boto3.client("events", region_name=region).create_event_bus(Name=aws_env["EVENT_BUS_NAME"])
    reset_services()
    monkeypatch.setattr(messages, "_sender", LogSender())
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)
    # One member per page, and LambdaContext's 30 s is under the workers' safety margin:
    # every job task with a next page hands it on as a new task, as a long one would.
    monkeypatch.setattr(expiry_handler, "PAGE", 1)
    monkeypatch.setattr(tier_rules_handler, "PAGE", 1)
    return World(app_client, staff_token, Pos(app_client, store_key), region, urls, monkeypatch)


# ---- tours: one per function (or pair), each a realistic run of its code paths ---------


def tour_http(world: World) -> None:
    """Every route family as clients use them (APIHandler)."""
    http, staff = world.client.http, auth(world.staff)
    card = f"C{uuid.uuid4().hex[:8]}"
    member_id = world.register(birthday="1990-05-20", external_ids={"pos_card": card})
    member = auth(token_for(member_id))
    assert world.pos.send("GET", f"/v1/members/lookup?card={card}").status_code == 200
    assert http.get(f"/v1/members/{member_id}", headers=member).status_code == 200
    patched = http.patch(
        f"/v1/members/{member_id}", headers=member, body=json.dumps({"marketing_consent": True})
    )
    assert patched.status_code == 200, patched.json_body
    txn = world.buy(member_id, 20000)
    refund = world.pos.send(
        "POST",
        f"/v1/transactions/{txn}/refunds",
        {"refund_id": "rf-1", "items": [{"sku": "watch", "quantity": 1}]},
    )
    assert refund.status_code == 201, refund.json_body
    assert world.pos.send("GET", f"/v1/transactions/{txn}").status_code == 200
    activity = http.post(
        f"/v1/members/{member_id}/activities",
        headers=member,
        body=json.dumps({"activity_id": f"checkin-{uuid.uuid4().hex[:8]}", "type": "checkin"}),
    )
    assert activity.status_code == 201, activity.json_body
    adjustment = http.post(
        f"/v1/admin/members/{member_id}/adjustments",
        headers=staff,
        body=json.dumps({"adjustment_id": uuid.uuid4().hex, "points": 50, "reason": "goodwill"}),
    )
    assert adjustment.status_code == 201, adjustment.json_body
    for path in ("points", "ledger", "tier"):
        assert http.get(f"/v1/members/{member_id}/{path}", headers=member).status_code == 200
    config = http.get("/v1/admin/program", headers=staff).json_body["config"]
    saved = http.put("/v1/admin/program", headers=staff, body=json.dumps(config))
    assert saved.status_code == 200, saved.json_body
    day = program_date(datetime.now(UTC)).isoformat()
    assert http.get(f"/v1/admin/jobs/expiry/runs/{day}", headers=staff).status_code in (200, 404)
    # member presence: the app asks for a code, the POS looks it up and pays with it
    issued = http.post(f"/v1/members/{member_id}/member-code", headers=member)
    assert issued.status_code == 201, issued.json_body
    code = issued.json_body["code"]
    assert world.pos.send("GET", f"/v1/members/lookup?member_code={code}").status_code == 200
    paid = world.pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
            "store_id": "store-001",
            "member_code": code,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "latte", "category": "drinks", "quantity": 1, "unit_price": 3200}],
            "total": 3200,
            "pay_with_points": 50,
        },
    )
    assert paid.status_code == 201, paid.json_body
    # coupons: a template, a staff issue, the member's list, a till redeeming one
    template_id = world.coupon_template()
    templates = "/v1/admin/coupon-templates"
    assert http.get(templates, headers=staff).status_code == 200
    edited = http.patch(
        f"{templates}/{template_id}", headers=staff, body=json.dumps({"version": 1, "name": "x"})
    )
    assert edited.status_code == 200, edited.json_body
    issued_coupon = http.post(
        f"/v1/admin/members/{member_id}/coupons",
        headers=staff,
        body=json.dumps({"issue_id": "i-1", "template_id": template_id}),
    )
    assert issued_coupon.status_code == 201, issued_coupon.json_body
    listed = http.get(f"/v1/members/{member_id}/coupons", headers=member)
    assert listed.status_code == 200, listed.json_body
    redeemed = world.pos.send(
        "POST",
        f"/v1/coupons/{issued_coupon.json_body['code']}/redeem",
        {"transaction_id": "t-coupon", "store_id": "store-001"},
    )
    assert redeemed.status_code == 200, redeemed.json_body
    # stores and dealers as an admin keeps them
    admin = auth(token_for(None, "admin"))
    assert http.get("/v1/admin/stores", headers=admin).status_code == 200
    assert http.get("/v1/admin/dealers", headers=admin).status_code == 200
    # personal data: the member's export, then an admin erases the member
    assert http.get(f"/v1/members/{member_id}/export", headers=member).status_code == 200
    erased = http.post(
        f"/v1/admin/members/{member_id}/erase",
        headers=admin,
        body=json.dumps({"request_id": "erase-1", "reason": "member_request"}),
    )
    assert erased.status_code == 202, erased.json_body
    # an app member's sign-in account closes with the erasure, in the stage's user pool
    world.erase_with_sign_in(admin)


def tour_tier_rules(world: World) -> None:
    """A new ladder proposed, dry-run and applied (APIHandler), then recalculated for
    every member by the jobs worker (OnJobTask scans the members table)."""
    from dataclasses import asdict

    from chalicelib.domain.tiers import DEFAULT_TIERS

    http, staff = world.client.http, auth(world.staff)
    world.buy(world.register(), 350_000)
    ladder = [asdict(t) for t in DEFAULT_TIERS]
    for tier in ladder:
        if tier["code"] == "gold":
            tier.update(qualify_spend=300_000, retain_spend=250_000)
    created = http.post("/v1/admin/tier-rules", headers=staff, body=json.dumps({"tiers": ladder}))
    assert created.status_code == 201, created.json_body
    version = created.json_body["version"]
    dry = http.post(f"/v1/admin/tier-rules/{version}/dry-run", headers=staff)
    assert dry.status_code == 202, dry.json_body
    world.settle()
    applied = http.post(
        f"/v1/admin/tier-rules/{version}/apply", headers=auth(token_for(None, "admin"))
    )
    assert applied.status_code == 202, applied.json_body
    world.settle()
    view = http.get(f"/v1/admin/tier-rules/{version}", headers=staff).json_body
    assert view["status"] == "applied", view
    assert view["apply"]["changed"] >= 1, view


def tour_member_events(world: World) -> None:
    """Registration and purchases through the stream (OnMemberStream: events, welcome
    message, sign-up points, tier counting and upgrade) and the messages (OnMessage)."""
    template_id = world.coupon_template()
    world.coupon_rules(
        welcome=[template_id], first_purchase=[template_id], tier_upgrade={"gold": [template_id]}
    )
    member_id = world.register()
    world.buy(member_id, 520_000)  # crosses gold
    world.settle()
    coupons = world.client.http.get(
        f"/v1/members/{member_id}/coupons", headers=auth(token_for(member_id))
    ).json_body["coupons"]
    assert len(coupons) == 3, coupons  # welcome, first purchase, gold
    tier = world.client.http.get(
        f"/v1/members/{member_id}/tier", headers=auth(token_for(member_id))
    ).json_body
    assert tier["tier"]["code"] == "gold", tier
    assert messages.sender().sent[-1:] != []  # type: ignore[attr-defined]


def tour_expiry(world: World) -> None:
    """The daily expiry (PointsExpiry queues tasks; OnJobTask expires each member)."""
    member_id = world.register()
    world.credit(member_id, 300, datetime(2025, 3, 10, 4, tzinfo=UTC))  # through 2026-03-31
    world.settle()
    world.schedule("points_expiry", datetime(2026, 3, 31, 16, 5, tzinfo=UTC))
    world.settle()
    assert world.balance(member_id) == 100  # the 300 expired; the sign-up points remain


def tour_reminders(world: World) -> None:
    """Expiry reminders (ExpiryReminders) sent and marked by the messages worker."""
    member_id = world.register(marketing_consent=True)
    world.credit(member_id, 300, datetime(2025, 3, 10, 4, tzinfo=UTC))  # through 2026-03-31
    world.settle()
    world.schedule("expiry_reminders", datetime(2026, 3, 20, 2, 5, tzinfo=UTC))
    sent_before = len(messages.sender().sent)  # type: ignore[attr-defined]
    world.settle()
    assert len(messages.sender().sent) > sent_before  # type: ignore[attr-defined]


def tour_birthday(world: World) -> None:
    """Birthday points and greetings (BirthdayGreetings, and whichever worker it hands
    members to), sent by the messages worker."""
    fired = datetime(2026, 5, 19, 16, 5, tzinfo=UTC)  # 00:05 on 20 May in Shanghai
    world.coupon_rules(birthday=[world.coupon_template()])
    member_id = world.register(birthday="1991-05-20", marketing_consent=True)
    world.settle()
    before = world.balance(member_id)
    world.schedule("birthday_greetings", fired)
    world.settle()
    assert world.balance(member_id) > before


def tour_review(world: World) -> None:
    """The yearly tier review (TierReview, and whichever worker it hands members to) of
    a member whose tier year ends."""
    member_id = world.register()
    world.buy(member_id, 520_000)
    world.settle()  # gold from now, reviewed a year on
    due = world.member_item(member_id)["review_due"]
    anniversary = program_date(datetime.now(UTC)) + timedelta(days=366)
    fired = datetime.combine(anniversary, datetime.min.time(), UTC) + timedelta(
        hours=16, minutes=10
    )
    world.schedule("tier_review", fired)
    world.settle()
    assert world.member_item(member_id).get("review_due") != due  # reviewed


def tour_message_retries(world: World) -> None:
    """The messages worker deferring marketing at night and releasing its delivery guard
    when the sender fails (OnMessage)."""
    monkeypatch = world.monkeypatch
    member_id = world.register(marketing_consent=True)
    world.settle()
    body = {
        "message_id": f"promo#{uuid.uuid4().hex}",
        "member_id": member_id,
        "template": "spring_sale",
        "category": "marketing",
        "params": {},
    }
    world.sqs.send_message(QueueUrl=world.urls["MessagesQueue"], MessageBody=json.dumps(body))
    monkeypatch.setattr(messages, "utc_now", lambda: NIGHT)
    world.drain("MessagesQueue", "on_message")
    assert world.failures, "the marketing message was not deferred"

    class Failing(LogSender):
        def send(self, recipient: Any, template: str, params: dict[str, Any]) -> None:
            raise ConnectionError("SMS gateway timed out")

    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)
    monkeypatch.setattr(messages, "_sender", Failing())
    body["message_id"] = f"promo#{uuid.uuid4().hex}"
    world.sqs.send_message(QueueUrl=world.urls["MessagesQueue"], MessageBody=json.dumps(body))
    failures = len(world.failures)
    world.drain("MessagesQueue", "on_message")
    assert len(world.failures) == failures + 1


def tour_mall(world: World) -> None:
    """The points mall (APIHandler): a reward created and listed, redeemed (points, and
    points + cash), paid, cancelled; an unpaid one released by ReleasePaymentHolds."""
    from tests.unit.test_rewards_api import notify

    http, staff = world.client.http, auth(world.staff)
    member_id = world.register()
    world.credit(member_id, 5000, datetime.now(UTC))
    member = auth(token_for(member_id))
    reward_id = f"rw-{uuid.uuid4().hex[:8]}"
    body = {"reward_id": reward_id, "name": "Bottle", "kind": "gift", "points": 100, "stock": 60}
    created = http.post("/v1/admin/rewards", headers=staff, body=json.dumps({**body, "cash": 10}))
    assert created.status_code == 201, created.json_body
    assert http.get(f"/v1/admin/rewards/{reward_id}", headers=staff).status_code == 200
    assert http.get("/v1/rewards", headers=member).status_code == 200
    for rid in ("m-1", "m-2", "m-3"):
        redeemed = http.post(
            f"/v1/members/{member_id}/redemptions",
            headers=member,
            body=json.dumps({"redemption_id": rid, "reward_id": reward_id}),
        )
        assert redeemed.status_code == 201, redeemed.json_body
    paid = {
        "payment_id": "pay-1",
        "member_id": member_id,
        "redemption_id": "m-1",
        "amount": 10,
        "status": "paid",
    }
    assert notify(world.client, paid).status_code == 200
    cancelled = http.post(f"/v1/members/{member_id}/redemptions/m-2/cancel", headers=member)
    assert cancelled.status_code == 200, cancelled.json_body
    assert http.get(f"/v1/members/{member_id}/redemptions", headers=member).status_code == 200
    patched = http.patch(
        f"/v1/admin/rewards/{reward_id}",
        headers=staff,
        body=json.dumps({"version": 1, "stock": 30}),
    )
    assert patched.status_code == 200, patched.json_body
    result = world.schedule("release_payment_holds", datetime.now(UTC) + timedelta(hours=1))
    assert result["expired"] == 1, result


TOURS: list[Callable[[World], None]] = [
    tour_tier_rules,
    tour_http,
    tour_member_events,
    tour_expiry,
    tour_reminders,
    tour_birthday,
    tour_review,
    tour_message_retries,
    tour_mall,
]
# What each tour needed, kept for the last test (which runs the tours not run before).
_needed: dict[str, list[iam_check.Request]] = {}


def run(tour: Callable[[World], None], world: World, *functions: str) -> list[iam_check.Request]:
    """Run a tour recording its calls; each of `functions` must have made some, and the
    roles must allow them all."""
    with iam_check.recording() as recorder:
        tour(world)
    _needed[tour.__name__] = recorder.requests
    made = {r.function for r in recorder.requests}
    assert set(functions) <= made, f"no calls recorded for {set(functions) - made}"
    problems = iam_check.denied(recorder.requests)
    assert problems == [], "\n".join(p.describe() for p in problems)
    return recorder.requests


def test_given_tier_rules_applied_when_the_jobs_worker_recalculates_members_then_its_role_allows_the_scan(
    world,
):
    needed = run(tour_tier_rules, world, "APIHandler", "OnJobTask")
    assert iam_check.Request("OnJobTask", "dynamodb:Scan", "MembersTable", (), "Scan") in needed


def test_given_every_route_family_when_clients_call_them_then_the_api_role_allows_every_call(
    world,
):
    run(tour_http, world, "APIHandler")


def test_given_registrations_and_purchases_when_the_stream_and_messages_follow_then_their_roles_allow_every_call(
    world,
):
    run(tour_member_events, world, "OnMemberStream", "OnMessage")


def test_given_points_past_their_date_when_expiry_runs_then_the_schedule_and_the_worker_roles_allow_every_call(
    world,
):
    run(tour_expiry, world, "PointsExpiry", "OnJobTask")


def test_given_the_points_mall_when_members_redeem_and_holds_are_released_then_the_roles_allow_every_call(
    world,
):
    run(tour_mall, world, "APIHandler", "ReleasePaymentHolds")


def test_given_points_expiring_soon_when_reminders_go_out_then_their_roles_allow_every_call(
    world,
):
    run(tour_reminders, world, "ExpiryReminders", "OnMessage")


def test_given_a_birthday_today_when_greetings_run_then_their_roles_allow_every_call(world):
    run(tour_birthday, world, "BirthdayGreetings", "OnMessage")


def test_given_a_tier_anniversary_when_the_review_runs_then_its_role_allows_every_call(world):
    run(tour_review, world, "TierReview")


def test_given_night_or_a_failing_sender_when_messages_are_retried_then_the_worker_role_allows_it(
    world,
):
    run(tour_message_retries, world, "OnMessage")


def test_given_every_tour_then_each_line_of_every_role_was_needed(world):
    for tour in TOURS:
        if tour.__name__ not in _needed:  # run alone (-k): take the tours' calls afresh
            run(tour, world)
    needed = [r for tour in TOURS for r in _needed[tour.__name__]]
    assert {r.function for r in needed} == set(gen_template.ALL_FUNCTIONS)
    unused = [
        f"{function}: {action} on {grant.resource}" + (f" keys {pattern}" if pattern else "")
        for function, grants in iam.ACCESS.items()
        for grant in grants
        if not grant.for_trigger
        for action in grant.actions
        for pattern in grant.keys or ("",)
        if not any(
            r.function == function
            and r.action == action
            and r.resource == grant.resource
            and (not pattern or any(iam_check.key_matches(pattern, k) for k in r.keys))
            for r in needed
        )
    ]
    assert unused == [], (
        "granted but never needed by the tours (drop the grant, or add the call to a tour "
        "in tests/unit/test_iam.py):\n" + "\n".join(unused)
    )


# ---- the template: one role per function, nothing shared, nothing secret spread -------


def _template() -> dict[str, Any]:
    return dict(json.loads(gen_template.render()))


def test_given_the_template_then_each_function_role_has_its_own_policy_and_no_other():
    resources = _template()["Resources"]
    policies = {rid for rid, r in resources.items() if r.get("Type") == "AWS::IAM::ManagedPolicy"}
    attached: list[str] = []
    for function in gen_template.ALL_FUNCTIONS:
        role = resources[gen_template.ROLE_OF.get(function, f"{function}Role")]
        refs = [p["Ref"] for p in role["Properties"]["ManagedPolicyArns"]]
        assert refs == [f"{function}Access"], function
        attached += refs
    assert sorted(attached) == sorted(policies)  # none unattached, none shared
    assert set(iam.ACCESS) == set(gen_template.ALL_FUNCTIONS)


@pytest.mark.parametrize("function", [f for f in iam.ACCESS if f != "APIHandler"])
def test_given_a_function_other_than_the_api_then_it_cannot_touch_pos_keys_or_identity_claims(
    function,
):
    template = _template()
    statements = iam_check.role_statements(function, template)
    for action in ("GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"):
        for resource, key in (("ProgramTable", "STOREKEY#k-1"), ("MembersTable", "ID#phone#ab")):
            request = iam_check.Request(function, f"dynamodb:{action}", resource, (key,))
            assert not iam_check.allows(statements, request, template), request.describe()


def test_given_the_template_then_only_the_api_is_given_the_pii_hash_key():
    """The API alone names the hash key's secret, and no function is given the key
    itself as an environment variable: it is read from Secrets Manager at run time."""
    template = _template()
    given = {
        f
        for f in gen_template.ALL_FUNCTIONS
        if "PII_HASH_KEY_SECRET_ID" in iam_check.environment(f, template)
    }
    assert given == {"APIHandler"}
    assert not any(
        "PII_HASH_KEY" in iam_check.environment(f, template) for f in gen_template.ALL_FUNCTIONS
    )
    assert "resolve:secretsmanager:${PiiHashKey}" not in json.dumps(template)


def test_given_the_template_then_only_the_api_and_the_messages_worker_may_use_the_pii_key():
    """Decrypting personal data takes the KMS key: the API (shows and writes members) and
    the messages worker (sends to a phone) only; the ledger's readers never decrypt."""
    template = _template()
    users = set()
    for function in gen_template.ALL_FUNCTIONS:
        statements = iam_check.role_statements(function, template)
        request = iam_check.Request(function, "kms:Decrypt", "PiiKey")
        if iam_check.allows(statements, request, template):
            users.add(function)
    assert users == {"APIHandler", "OnMessage"}
    key = template["Resources"]["PiiKey"]["Properties"]
    assert key["EnableKeyRotation"] is True


def test_given_each_trigger_then_its_function_role_lets_lambda_read_it_and_dead_letter_failures():
    template = _template()
    resources = template["Resources"]
    expected: dict[str, set[tuple[str, str]]] = {}
    for function in gen_template.ALL_FUNCTIONS:
        for event in resources.get(function, {}).get("Properties", {}).get("Events", {}).values():
            props = event["Properties"]
            wanted = expected.setdefault(function, set())
            if "Stream" in props:
                table = props["Stream"]["Fn::GetAtt"][0]
                for action in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams"):
                    wanted.add((f"dynamodb:{action}", f"{table}/stream"))
            if "Queue" in props:
                queue = props["Queue"]["Fn::GetAtt"][0]
                for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
                    wanted.add((f"sqs:{action}", queue))
            destination = props.get("DestinationConfig", {}).get("OnFailure", {})
            if destination:
                wanted.add(("sqs:SendMessage", destination["Destination"]["Fn::GetAtt"][0]))
    assert set(expected) == {"OnMemberStream", "OnMessage", "OnJobTask"}
    for function, wanted in expected.items():
        statements = iam_check.role_statements(function, template)
        for action, resource in wanted:
            request = iam_check.Request(function, action, resource)
            assert iam_check.allows(statements, request, template), request.describe()
        declared = {
            (action, grant.resource)
            for grant in iam.ACCESS[function]
            if grant.for_trigger
            for action in grant.actions
        }
        assert declared == wanted, function


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_given_the_stage_policy_file_then_logs_go_only_to_lambda_log_groups(stage):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = json.loads((root / ".chalice" / "config.json").read_text())
    document = json.loads(
        (root / ".chalice" / config["stages"][stage]["iam_policy_file"]).read_text()
    )
    for statement in document["Statement"]:
        if all(a.startswith("xray:") for a in statement["Action"]):
            continue  # X-Ray has no resource-level permissions
        assert statement["Resource"] == "arn:*:logs:*:*:log-group:/aws/lambda/*", statement


# ---- the checker itself ------------------------------------------------------------------


def test_given_a_transaction_then_each_item_needs_its_own_action_on_its_table():
    environ = {"MEMBERS_TABLE": "m", "RUNTIME_TABLE": "r"}
    found = iam_check.requests_for(
        "OnJobTask",
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "m", "Item": {"pk": {"S": "MEMBER#1"}}}},
                {"Update": {"TableName": "m", "Key": {"pk": {"S": "TXN#s#1"}}}},
                {"Delete": {"TableName": "r", "Key": {"pk": {"S": "MSG#1"}}}},
                {"ConditionCheck": {"TableName": "m", "Key": {"pk": {"S": "ID#x"}}}},
            ]
        },
        environ,
    )
    assert [(r.action, r.resource, r.keys) for r in found] == [
        ("dynamodb:PutItem", "MembersTable", ("MEMBER#1",)),
        ("dynamodb:UpdateItem", "MembersTable", ("TXN#s#1",)),
        ("dynamodb:DeleteItem", "RuntimeTable", ("MSG#1",)),
        ("dynamodb:ConditionCheckItem", "MembersTable", ("ID#x",)),
    ]


def test_given_index_queries_batches_and_unknown_names_then_the_checker_names_what_iam_checks():
    environ = {"MEMBERS_TABLE": "m", "JOBS_QUEUE_URL": "https://q/jobs"}
    (query,) = iam_check.requests_for(
        "TierReview", "dynamodb", "Query", {"TableName": "m", "IndexName": "review-index"}, environ
    )
    assert (query.action, query.resource) == ("dynamodb:Query", "MembersTable/index/review-index")
    (batch,) = iam_check.requests_for(
        "OnJobTask", "sqs", "SendMessageBatch", {"QueueUrl": "https://q/jobs"}, environ
    )
    assert (batch.action, batch.resource) == ("sqs:SendMessage", "JobsQueue")
    (other,) = iam_check.requests_for(
        "OnJobTask", "sqs", "SendMessage", {"QueueUrl": "https://q/other"}, environ
    )
    assert other.resource == "?https://q/other"
    assert iam_check.denied([other, query.__class__("OnJobTask", "dynamodb:Scan", "?x")]) != []


def test_given_leading_keys_then_a_key_outside_the_patterns_is_refused():
    template = _template()
    statements = iam_check.role_statements("OnJobTask", template)
    ok = iam_check.Request("OnJobTask", "dynamodb:UpdateItem", "RuntimeTable", ("JOB#expiry#d",))
    nonce = iam_check.Request("OnJobTask", "dynamodb:UpdateItem", "RuntimeTable", ("NONCE#s#n",))
    assert iam_check.allows(statements, ok, template)
    assert not iam_check.allows(statements, nonce, template)


def test_given_the_entry_points_then_job_tasks_belong_to_the_jobs_worker_and_shared_helpers_to_none():
    entries = iam_check.entry_points()
    assert "chalicelib.handlers.tier_rules:tier_rules_task" in entries["OnJobTask"]
    assert "chalicelib.handlers.expiry:expiry_task" in entries["OnJobTask"]
    shared = "chalicelib.handlers.grants:grant_activity"
    assert all(shared not in names for names in entries.values())
    assert set(entries) == set(gen_template.ALL_FUNCTIONS)
