"""Credentials and on-demand jobs for the local stack.

python -m local.tools token --role member --subject <member_id>
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

from local.infra import stage_environment
from local.stack import stack_environment, state_file


def member_or_staff_token(
    role: str,
    subject: str | None,
    store: str | None = None,
    ttl_seconds: int = 12 * 3600,
    env: dict[str, str] | None = None,
) -> str:
    """A token shaped like Cognito's, signed with the local stage's secret."""
    import jwt

    config = env or stage_environment("local")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": config["JWT_ISSUER"],
        "aud": config["JWT_AUDIENCE"],
        "iat": now,
        "exp": now + ttl_seconds,
        "token_use": "id",
    }
    if role == "member":
        claims["sub"] = subject or f"user-{uuid.uuid4()}"
        if subject:
            claims["custom:member_id"] = subject
    else:
        claims["sub"] = subject or f"staff-{role}"
        claims["cognito:groups"] = [role]
        if store:
            claims["custom:store_id"] = store
    return jwt.encode(claims, config["JWT_SECRET"], algorithm="HS256")


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
    key = sub.add_parser("store-key")
    key.add_argument("--store", required=True)
    key.add_argument("--format", choices=["json", "env"], default="json")
    job = sub.add_parser("tick")
    job.add_argument("job")
    job.add_argument("--at", help="the schedule's firing time (RFC 3339), default now")
    args = parser.parse_args()
    if args.command == "token":
        print(member_or_staff_token(args.role, args.subject or None, args.store or None))
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
