"""Cold start: what importing the Chalice app, and its first request, cost in a fresh
interpreter.

Five kinds of fresh interpreter (the same Python as this one, cwd = project root), each
timing itself with time.perf_counter() and printing the result:

- app:       `import app`
- baseline:  `import chalice, boto3, pynamodb.models; chalice.Chalice(app_name="x")`,
             the floor any Chalice + DynamoDB app pays
- request:   `import app`, then one `GET /v1/health` through chalice.test.Client
             (stage "local"); health touches no database
- first_db_request: `import app`, then one `GET /v1/members/{id}` with a member token
             through chalice.test.Client (stage "local") against DynamoDB Local: what a
             member waits for on a cold container (token check with its sign-in GetItem,
             settings, the member GetItem, the program's tiers)
- first_db_request_baseline: a bare Chalice app with one pynamodb model answering the
             same member GetItem (same table, same key) through the same client

The two database kinds share one in-memory DynamoDB Local started here, with the
template's tables, the demo program and one member (its token minted here, not timed).

One warm-up run of each kind is made first and discarded (it compiles any missing .pyc).
Then the kinds run in rounds, with the order rotated each round, so machine noise falls
on all of them alike. Interpreter start-up itself (before the first line of `-c`) is not
in any figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from bench import common
from bench.common import local_env
from local.stack import ENDPOINT_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
RUNS = 21
QUICK_RUNS = 7  # the minimum: fewer fresh interpreters say too little
RATIO_GOAL = 1.2  # app import at most 20% above the bare Chalice + boto3 + pynamodb floor

MARK = "BENCH_MS="

_APP = f"""
import time
t0 = time.perf_counter()
import app
t1 = time.perf_counter()
print("{MARK}%r" % ((t1 - t0) * 1000.0))
"""

_BASELINE = f"""
import time
t0 = time.perf_counter()
import chalice, boto3, pynamodb.models
chalice.Chalice(app_name="x")
t1 = time.perf_counter()
print("{MARK}%r" % ((t1 - t0) * 1000.0))
"""

# chalice.test (the harness) is imported between the two timed spans, so that it neither
# counts nor pre-loads anything the app needs: its CLI config loader imports botocore
# (and urllib3, dateutil, ...), which a Lambda's first DynamoDB call has to import itself.
# So every module that import brought in, other than chalice's own, is forgotten again
# before the request: the request imports what it needs, as on a cold Lambda.
_HARNESS = """
t1 = time.perf_counter()
import sys
loaded = set(sys.modules)
from chalice.test import Client
for name in set(sys.modules) - loaded:
    if name != "chalice" and not name.startswith("chalice."):
        del sys.modules[name]
t2 = time.perf_counter()
"""
_REPORT = f"""
print("{MARK}%r" % (((t1 - t0) + (t3 - t2)) * 1000.0))
"""

_REQUEST = f"""
import time
t0 = time.perf_counter()
import app
{_HARNESS}
with Client(app.app, stage_name="local") as client:
    response = client.http.get("/v1/health")
    t3 = time.perf_counter()
if response.status_code != 200:
    raise SystemExit("GET /v1/health answered %s: %r" % (response.status_code, response.body))
{_REPORT}
"""

# The member and its token come from the parent (read before t0: minting is not timed).
_FIRST_DB_REQUEST = f"""
import os, time
member_id, token = os.environ["BENCH_MEMBER_ID"], os.environ["BENCH_MEMBER_TOKEN"]
t0 = time.perf_counter()
import app
{_HARNESS}
with Client(app.app, stage_name="local") as client:
    response = client.http.get(
        "/v1/members/" + member_id, headers={{"Authorization": "Bearer " + token}}
    )
    t3 = time.perf_counter()
if response.status_code != 200 or member_id.encode() not in response.body:
    raise SystemExit("GET /v1/members answered %s: %r" % (response.status_code, response.body))
{_REPORT}
"""

# The floor of that request: Chalice, one pynamodb model and its GetItem (the same
# table and key, an eventually consistent read like the app's). The table's name comes
# from the process environment, as a Lambda's would.
_FIRST_DB_REQUEST_BASELINE = f"""
import os, time
member_id = os.environ["BENCH_MEMBER_ID"]
t0 = time.perf_counter()
from chalice import Chalice
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

class MemberItem(Model):
    class Meta:
        table_name = os.environ["MEMBERS_TABLE"]
        region = os.environ["AWS_REGION"]
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    member_id = UnicodeAttribute()

bare = Chalice(app_name="baseline")

@bare.route("/v1/members/{{member_id}}")
def get_member(member_id):
    item = MemberItem.get("MEMBER#" + member_id, "MEMBER")
    return {{"member_id": item.member_id}}
{_HARNESS}
with Client(bare, stage_name="local") as client:
    response = client.http.get("/v1/members/" + member_id)
    t3 = time.perf_counter()
if response.status_code != 200 or member_id.encode() not in response.body:
    raise SystemExit("GET /v1/members answered %s: %r" % (response.status_code, response.body))
{_REPORT}
"""

KINDS: dict[str, str] = {
    "app": _APP,
    "baseline": _BASELINE,
    "request": _REQUEST,
    "first_db_request": _FIRST_DB_REQUEST,
    "first_db_request_baseline": _FIRST_DB_REQUEST_BASELINE,
}
DB_KINDS = frozenset({"first_db_request", "first_db_request_baseline"})


def child_environment() -> dict[str, str]:
    """This environment without any AWS_* or PYTHON* variable (so no credentials, no
    PYTHONDONTWRITEBYTECODE, no PYTHONPROFILEIMPORTTIME), with AWS config files and the
    instance metadata service switched off: importing the app must need none of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "__PYVENV"))}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def member_with_token(env: dict[str, str]) -> tuple[str, str]:
    """In DynamoDB Local at `env`: the template's tables, the demo program and one member
    (name, birthday, card); returns its id and a member token for it (its sign-in linked
    as `local.tools.member_or_staff_token` does). Runs in this process, never in a child."""
    import boto3

    from chalicelib.domain import members as domain
    from chalicelib.domain.clock import utc_now
    from chalicelib.wiring import services
    from local.infra import create_tables
    from local.seed import seed
    from local.tools import member_or_staff_token

    with common.environment(env, remove=ENDPOINT_VARIABLES):
        create_tables(boto3.client("dynamodb", region_name=env["AWS_REGION"]), env)
        seed()
        svc = services()
        registration = domain.Registration(
            phone="+8613900000001",
            channel="app",
            name="Cold Start",
            birthday=date(1990, 5, 17),
            external_ids={"pos_card": "COLD-0001"},
        )
        member = domain.register(registration, svc.members, svc.hasher, utc_now())
        token = member_or_staff_token("member", member.member_id, env=env)
    return member.member_id, token


def measure(kind: str, env: dict[str, str], cwd: Path = ROOT, flags: tuple[str, ...] = ()) -> float:
    """One fresh interpreter of this kind (in `cwd`, with interpreter `flags`); the
    milliseconds it reported."""
    proc = subprocess.run(
        [sys.executable, *flags, "-c", KINDS[kind]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    values = [line[len(MARK) :] for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or len(values) != 1:
        raise RuntimeError(
            f"coldstart {kind} run failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return float(values[0])


def summary(samples: list[float]) -> dict[str, float]:
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1]
    return {
        "median": statistics.median(samples),
        "p90": p90,
        "min": min(samples),
        "max": max(samples),
    }


def run(quick: bool = False) -> dict[str, Any]:
    runs = QUICK_RUNS if quick else RUNS
    with common.dynamodb_local("coldstart") as endpoint:
        stage = local_env(endpoint)
        member_id, token = member_with_token(stage)
        # A Lambda starts with its settings in the environment; here also the endpoint
        # and dummy credentials, so the first request reaches DynamoDB Local.
        db_env = {
            **child_environment(),
            **stage,
            "BENCH_MEMBER_ID": member_id,
            "BENCH_MEMBER_TOKEN": token,
        }
        samples = sample_kinds(runs, child_environment(), db_env)

    stats = {kind: summary(values) for kind, values in samples.items()}
    figures: dict[str, float] = {}
    units: dict[str, str] = {}
    for prefix, kind in (
        ("import_app", "app"),
        ("import_baseline", "baseline"),
        ("first_request", "request"),
        ("first_db_request", "first_db_request"),
        ("first_db_request_baseline", "first_db_request_baseline"),
    ):
        for stat, value in stats[kind].items():
            name = f"{prefix}_ms" if stat == "median" else f"{prefix}_{stat}_ms"
            figures[name] = round(value, 1)
            units[name] = "ms"
    figures["import_ratio"] = round(stats["app"]["median"] / stats["baseline"]["median"], 3)
    units["import_ratio"] = "x"
    figures["first_db_request_ratio"] = round(
        stats["first_db_request"]["median"] / stats["first_db_request_baseline"]["median"], 3
    )
    units["first_db_request_ratio"] = "x"

    return {
        "figures": figures,
        "units": units,
        "goals": {
            "import_ratio": {"max": RATIO_GOAL},
            "first_db_request_ratio": {"max": RATIO_GOAL},
        },
        "info": {
            "runs_per_kind": runs,
            "warmup_runs_discarded": 1,
            "python": sys.executable,
            "import_ratio": "median import_app_ms / median import_baseline_ms",
            "first_request": "import app + Client(app.app, stage_name='local') + GET /v1/health"
            " (the chalice.test import in between is not timed); touches no database",
            "first_db_request": "import app + Client(app.app, stage_name='local') + GET"
            " /v1/members/{id} with a member token, DynamoDB Local (the chalice.test import"
            " in between and the token's minting are not timed)",
            "first_db_request_baseline": "a bare Chalice app with one pynamodb model answering"
            " the same member GetItem through the same client, timed alike",
            "first_db_request_ratio": "median first_db_request_ms / median"
            " first_db_request_baseline_ms",
            "samples_ms": {kind: [round(v, 1) for v in values] for kind, values in samples.items()},
        },
    }


def sample_kinds(runs: int, env: dict[str, str], db_env: dict[str, str]) -> dict[str, list[float]]:
    """One discarded warm-up of each kind, then `runs` rounds of every kind with the order
    rotated each round, so machine noise falls on all kinds alike."""
    kinds = list(KINDS)

    def one(kind: str) -> float:
        return measure(kind, db_env if kind in DB_KINDS else env)

    for kind in kinds:  # warm-up, discarded
        one(kind)
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(runs):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            samples[kind].append(one(kind))
    return samples
