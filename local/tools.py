"""Credentials and on-demand jobs for the local stack.

python -m local.tools token --role member --subject <member_id>
python -m local.tools token --role member --phone +8613800001111   (an app user signing up)
python -m local.tools token --role ops
python -m local.tools store-key --store store-001
python -m local.tools tick birthday_greetings [--at 2026-03-01T16:05:00Z]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import DomainError
from local.infra import stage_environment
from local.stack import stack_environment, state_file

# Local sign-ins linked by `token` to members that have none (registered at a POS or by
# staff): one per member, the same on every call, so two calls link the same `sub`.
LOCAL_SIGN_INS = uuid.UUID("6f1d2f6e-3c4b-4b7e-9a51-0c1f4e2d7a10")


def bearer(token: str) -> dict[str, str]:
    """The headers a JSON client sends with a bearer token."""
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def signed_token(
    claims: dict[str, Any], ttl_seconds: int = 12 * 3600, env: dict[str, str] | None = None
) -> str:
    """`claims` as a Cognito-shaped id token signed with the local stage's secret."""
    import jwt

    config = env or stage_environment("local")
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": config["JWT_ISSUER"],
        "aud": config["JWT_AUDIENCE"],
        "iat": now,
        "exp": now + ttl_seconds,
        "token_use": "id",
        **claims,
    }
    return jwt.encode(payload, config["JWT_SECRET"], algorithm="HS256")


def member_or_staff_token(
    role: str,
    subject: str | None,
    store: str | None = None,
    ttl_seconds: int = 12 * 3600,
    env: dict[str, str] | None = None,
    phone: str | None = None,
) -> str:
    """A staff token; or a member token: `subject` is a member id, and the token's `sub`
    is that member's sign-in (linked first if it has none: this needs the settings of
    the tables holding the member). Without `subject`, a new app user who has not signed
    up; `phone` adds the verified `phone_number` claim a sign-up needs."""
    claims: dict[str, Any]
    if role == "member":
        claims = {"sub": sign_in_of(subject) if subject else f"user-{uuid.uuid4()}"}
        if phone:
            claims["phone_number"] = phone
            claims["phone_number_verified"] = True
    else:
        claims = {"sub": subject or f"staff-{role}", "cognito:groups": [role]}
        if store:
            claims["custom:store_id"] = store
    return signed_token(claims, ttl_seconds, env)


def sign_in_of(member_id: str) -> str:
    """The member's sign-in `sub` (from its app sign-up), or a local one linked to it now:
    the app decides the member from that link, as it does for Cognito tokens."""
    from chalicelib.domain import members as domain
    from chalicelib.domain.clock import utc_now
    from chalicelib.wiring import services

    svc = services()
    member = domain.get_member(member_id, svc.members)
    linked = member.external_ids.get(domain.SIGN_IN)
    if linked:
        return linked
    subject = str(uuid.uuid5(LOCAL_SIGN_INS, member_id))
    member = domain.link_sign_in(member_id, subject, svc.members, svc.hasher, utc_now())
    return member.external_ids[domain.SIGN_IN]


def _use_running_stack() -> dict[str, Any]:
    path = state_file()
    if not path.exists():
        raise SystemExit("the local stack is not running: start it with `make run`")
    state: dict[str, Any] = json.loads(path.read_text())
    os.environ.update(stack_environment(state["ddb_port"], state["moto_port"], state["queues"]))
    return state


def create_store_key(store_id: str) -> dict[str, str]:
    """What `POST /v1/admin/stores/{store_id}/keys` does, without an admin token."""
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.stores import issue_key
    from chalicelib.errors import NotFound
    from chalicelib.wiring import services

    try:
        key = issue_key(store_id, services().program, utc_now())
    except NotFound:
        raise SystemExit(f"unknown store {store_id}") from None
    return {"store_id": key.store_id, "key_id": key.key_id, "secret": key.secret}


def tick(job: str, at: str | None) -> Any:
    import warnings

    import app as app_module

    # log_metrics warns when a run adds no metric; for a hand-run job that is noise
    warnings.filterwarnings("ignore", "No application metrics to publish")
    from local.pipeline import LambdaContext, scheduled_event

    handler = getattr(app_module, job, None)
    names = [
        s.name for s in app_module.app.event_sources if type(s).__name__ == "ScheduledEventConfig"
    ]
    if handler is None or job not in names:
        raise SystemExit(f"no scheduled job {job!r}; jobs: {', '.join(names)}")
    fired = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
    event = scheduled_event(job, fired, os.environ.get("AWS_REGION", "cn-north-1"))
    return handler(event, LambdaContext(job))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token")
    token.add_argument(
        "--role", default="member", choices=["member", "ops", "admin", "store_staff"]
    )
    token.add_argument("--subject")
    token.add_argument("--store")
    token.add_argument("--phone", help="a member token's verified phone_number (sign-up)")
    key = sub.add_parser("store-key")
    key.add_argument("--store", required=True)
    key.add_argument("--format", choices=["json", "env"], default="json")
    job = sub.add_parser("tick")
    job.add_argument("job")
    job.add_argument("--at", help="the schedule's firing time (RFC 3339), default now")
    args = parser.parse_args()
    if args.command == "token":
        if args.role == "member" and args.subject:
            _use_running_stack()  # the member's sign-in link lives in its table
        try:
            minted = member_or_staff_token(
                args.role, args.subject or None, args.store or None, phone=args.phone or None
            )
        except DomainError as exc:
            raise SystemExit(f"{exc.code}: {exc.message}") from exc
        print(minted)
    elif args.command == "store-key":
        _use_running_stack()
        created = create_store_key(args.store)
        if args.format == "env":
            # for `eval "$(make -s store-key STORE=... FORMAT=env)"` in a shell
            print(
                f"export STORE_ID={created['store_id']} KEY_ID={created['key_id']} "
                f"SECRET={created['secret']}"
            )
        else:
            print(json.dumps(created, indent=2))
    else:
        _use_running_stack()
        # One line, last: the job's own log lines (JSON too) come before it.
        print(json.dumps(tick(args.job, args.at), default=str, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
