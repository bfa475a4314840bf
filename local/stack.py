"""`make run`: the whole service on this machine.

DynamoDB Local (data kept under .local/), a local SQS + EventBridge endpoint (moto's
server), tables and queues from infra/resources.json, the demo program, the API on
127.0.0.1:$PORT (chalice's local server, local/api_server.py), and the event pipeline
(streams, queues, schedules) beside it.
Ctrl-C stops everything it started.

Why moto for SQS and EventBridge: producers use boto3's real clients against a real
HTTP endpoint (same calls as in AWS), and moto implements the queue semantics that
matter here (visibility, receive counts, redrive to DLQ) with nothing to install beyond
PyPI. Its receive latency (~0.1 s) is fine for a development stack; throughput is
measured against DynamoDB, not against the local queue.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".local"


def state_file(data_dir: Path | None = None) -> Path:
    """Where a running stack says how to reach it (ports, queue URLs) for the tools."""
    override = os.environ.get("LOYALTY_STACK_STATE")
    if data_dir is None and override:
        return Path(override)
    return (data_dir or DEFAULT_DATA_DIR) / "stack.json"


LOCAL_CREDENTIALS = {
    # DynamoDB Local and moto accept any credentials; these keep boto3 from looking
    # for real ones (and never reach AWS: every endpoint below is on 127.0.0.1).
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}


# What points the app at the local stack's endpoints and queues (`stack_environment`):
# unset them to keep a process that is given only DynamoDB off the rest of a stack.
ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_EVENTBRIDGE",
    "MESSAGES_QUEUE_URL",
)


def stack_environment(
    ddb_port: int, moto_port: int, queue_urls: dict[str, str] | None = None
) -> dict[str, str]:
    from local.infra import queue_env, stage_environment

    env = stage_environment("local")
    env.update(LOCAL_CREDENTIALS)
    env["AWS_REGION"] = env.get("AWS_DEFAULT_REGION", "cn-north-1")
    env["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{ddb_port}"
    env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = f"http://127.0.0.1:{ddb_port}"
    env["AWS_ENDPOINT_URL_SQS"] = f"http://127.0.0.1:{moto_port}"
    env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = f"http://127.0.0.1:{moto_port}"
    if queue_urls:
        env.update(queue_env(queue_urls))
    return env


def prepare(env: dict[str, str], *, seed_demo: bool = True) -> dict[str, Any]:
    """Create tables, queues, the event bus and (optionally) the demo program."""
    import boto3

    os.environ.update(env)
    region = env["AWS_REGION"]
    from local.infra import create_queues, create_tables

    tables = create_tables(boto3.client("dynamodb", region_name=region), env)
    sqs = boto3.client("sqs", region_name=region)
    queue_urls = create_queues(sqs, "loyalty-local", visibility_timeout=3)
    events = boto3.client("events", region_name=region)
    bus = env.get("EVENT_BUS_NAME", "default")
    if bus != "default" and bus not in {b["Name"] for b in events.list_event_buses()["EventBuses"]}:
        events.create_event_bus(Name=bus)
    from local.infra import queue_env

    os.environ.update(queue_env(queue_urls))
    from chalicelib.wiring import reset_services

    reset_services()
    if seed_demo:
        from local.seed import seed

        seed(demo_rules=True)  # and a welcome coupon for every new member
    return {"tables": tables, "queues": queue_urls}


def start_pipeline(
    tables: dict[str, str], queues: dict[str, str], region: str, checkpoint: Path | None
) -> Any:
    import boto3

    import app as app_module
    from local.infra import load_template
    from local.pipeline import EventPipeline, discover

    pipeline = EventPipeline(
        bindings=discover(app_module, load_template()),
        dynamodb=boto3.client("dynamodb", region_name=region),
        streams=boto3.client("dynamodbstreams", region_name=region),
        sqs=boto3.client("sqs", region_name=region),
        table_names=tables,
        queue_urls=queues,
        region=region,
        checkpoint_file=checkpoint,
    )
    pipeline.start()
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--ddb-port", type=int, default=int(os.environ.get("DDB_PORT", "8001")))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "8002")))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--in-memory", action="store_true", help="keep no data on disk")
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log

    from local import ddb

    for name, port in (
        ("API", args.port),
        ("DynamoDB Local", args.ddb_port),
        ("SQS/EventBridge", args.moto_port),
    ):
        if ddb.port_open(port):
            raise SystemExit(f"port {port} for {name} is in use (is the stack already running?)")

    data_dir: Path = args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    ddb_proc = ddb.start(
        args.ddb_port, None if args.in_memory else data_dir / "dynamodb", data_dir / "dynamodb.log"
    )
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
    moto.start()
    children: list[subprocess.Popen[bytes]] = [ddb_proc]
    pipeline = None
    try:
        env = stack_environment(args.ddb_port, args.moto_port)
        created = prepare(env, seed_demo=not args.no_seed)
        env = stack_environment(args.ddb_port, args.moto_port, created["queues"])
        checkpoint = None if args.in_memory else data_dir / "stream-checkpoints.json"
        pipeline = start_pipeline(
            created["tables"], created["queues"], env["AWS_REGION"], checkpoint
        )
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.api_server",
                "--stage",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
            ],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        children.append(api)
        deadline = time.monotonic() + 60
        while not ddb.port_open(args.port):
            if api.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the API server did not start")
            time.sleep(0.2)
        state = {
            "api": f"http://127.0.0.1:{args.port}",
            "ddb_port": args.ddb_port,
            "moto_port": args.moto_port,
            "queues": created["queues"],
            "tables": created["tables"],
            "pid": os.getpid(),
        }
        state_file(data_dir).write_text(json.dumps(state, indent=2))
        print(f"loyalty stack ready: API {state['api']}  (Ctrl-C stops it)", flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        while not stopped.is_set() and api.poll() is None:
            stopped.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the loyalty stack...", flush=True)
        if pipeline is not None:
            pipeline.stop()
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        moto.stop()
        state_file(data_dir).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
