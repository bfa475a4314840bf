"""Tier rule versions over HTTP (moto): validation, versions, async dry run and apply."""

from __future__ import annotations

import json
from dataclasses import asdict

from chalicelib.domain.tiers import DEFAULT_TIERS
from tests.conftest import auth, token_for, unique_phone


def ladder(**changes):
    tiers = [asdict(t) for t in DEFAULT_TIERS]
    for tier in tiers:
        tier.update(changes.get(tier["code"], {}))
    return {"tiers": tiers}


def test_given_an_inconsistent_ladder_when_proposed_then_422_with_the_problems(
    seeded, app_client, staff_token
):
    response = app_client.http.post(
        "/v1/admin/tier-rules",
        headers=auth(staff_token),
        body=json.dumps(ladder(gold={"qualify_spend": 100})),
    )
    assert response.status_code == 422
    assert response.json_body["error"]["code"] == "INVALID_TIER_RULES"
    assert any("gold" in p for p in response.json_body["error"]["details"]["problems"])


def test_given_a_valid_ladder_then_versions_count_up_and_a_dry_run_is_accepted(
    seeded, app_client, staff_token, monkeypatch
):
    from chalicelib.wiring import services

    sent: list = []
    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: sent.extend(tasks))
    first = app_client.http.post(
        "/v1/admin/tier-rules",
        headers=auth(staff_token),
        body=json.dumps(ladder(gold={"qualify_spend": 450_000})),
    )
    second = app_client.http.post(
        "/v1/admin/tier-rules", headers=auth(staff_token), body=json.dumps(ladder())
    )
    assert first.status_code == second.status_code == 201
    assert second.json_body["version"] == first.json_body["version"] + 1
    version = first.json_body["version"]
    dry = app_client.http.post(f"/v1/admin/tier-rules/{version}/dry-run", headers=auth(staff_token))
    assert dry.status_code == 202
    assert dry.json_body["status"] == "dry_run_running"
    assert len(sent) == 8
    assert {t["mode"] for t in sent} == {"dry_run"}
    assert (
        app_client.http.get("/v1/admin/tier-rules/999", headers=auth(staff_token)).status_code
        == 404
    )


def test_given_a_member_token_then_tier_rules_are_forbidden(seeded, app_client, staff_token):
    registered = app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps({"phone": unique_phone(), "channel": "app"}),
    )
    member = token_for(registered.json_body["member_id"])
    response = app_client.http.post(
        "/v1/admin/tier-rules", headers=auth(member), body=json.dumps(ladder())
    )
    assert response.status_code == 403


def test_given_an_apply_that_read_a_draft_when_another_applied_meanwhile_then_409(
    seeded, app_client, staff_token, monkeypatch
):
    """The status check passed on a read taken before another apply's write: the
    conditional write refuses, nothing is queued twice, and the caller is told why."""
    from chalicelib.wiring import services
    from local.tools import member_or_staff_token

    admin = member_or_staff_token("admin", None)
    svc = services()
    sent: list = []
    monkeypatch.setattr(svc.tasks, "send_many", lambda tasks: sent.extend(tasks))
    created = app_client.http.post(
        "/v1/admin/tier-rules", headers=auth(staff_token), body=json.dumps(ladder())
    )
    version = created.json_body["version"]
    first = app_client.http.post(f"/v1/admin/tier-rules/{version}/apply", headers=auth(admin))
    assert first.status_code == 202
    assert first.json_body["status"] == "applying"
    stored = svc.program.rules_version
    reads = iter([{**stored(version), "status": "draft"}])  # the stale read of the race
    monkeypatch.setattr(svc.program, "rules_version", lambda n: next(reads, None) or stored(n))

    second = app_client.http.post(f"/v1/admin/tier-rules/{version}/apply", headers=auth(admin))
    assert second.status_code == 409
    assert second.json_body["error"]["code"] == "RULES_STATUS_CHANGED"
    assert second.json_body["error"]["details"] == {"status": "applying"}
    assert len(sent) == 8  # the first apply's tasks only
