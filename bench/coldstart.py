"""Cold start: what importing the Chalice app costs in a fresh interpreter.

Three kinds of fresh interpreter (the same Python as this one, cwd = project root), each
timing itself with time.perf_counter() and printing the result:

- app:       `import app`
- baseline:  `import chalice, boto3, pynamodb.models; chalice.Chalice(app_name="x")`,
             the floor any Chalice + DynamoDB app pays
- request:   `import app`, then one `GET /v1/health` through chalice.test.Client
             (stage "local"); health touches no database

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
from pathlib import Path
from typing import Any

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

# chalice.test (the harness) imports botocore and chalice.local; it is imported between
# the two timed spans so that it neither counts nor pre-loads anything `import app` needs.
_REQUEST = f"""
import time
t0 = time.perf_counter()
import app
t1 = time.perf_counter()
from chalice.test import Client
t2 = time.perf_counter()
with Client(app.app, stage_name="local") as client:
    response = client.http.get("/v1/health")
    t3 = time.perf_counter()
if response.status_code != 200:
    raise SystemExit("GET /v1/health answered %s: %r" % (response.status_code, response.body))
print("{MARK}%r" % (((t1 - t0) + (t3 - t2)) * 1000.0))
"""

KINDS: dict[str, str] = {"app": _APP, "baseline": _BASELINE, "request": _REQUEST}


def child_environment() -> dict[str, str]:
    """This environment without any AWS_* or PYTHON* variable (so no credentials, no
    PYTHONDONTWRITEBYTECODE, no PYTHONPROFILEIMPORTTIME), with AWS config files and the
    instance metadata service switched off: importing the app must need none of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "__PYVENV"))}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def measure(kind: str, env: dict[str, str]) -> float:
    """One fresh interpreter of this kind; the milliseconds it reported."""
    proc = subprocess.run(
        [sys.executable, "-c", KINDS[kind]],
        cwd=ROOT,
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
    env = child_environment()
    kinds = list(KINDS)

    for kind in kinds:  # warm-up, discarded
        measure(kind, env)

    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(runs):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            samples[kind].append(measure(kind, env))

    app = summary(samples["app"])
    baseline = summary(samples["baseline"])
    request = summary(samples["request"])

    figures: dict[str, float] = {}
    units: dict[str, str] = {}
    for prefix, stats in (
        ("import_app", app),
        ("import_baseline", baseline),
        ("first_request", request),
    ):
        for stat, value in stats.items():
            name = f"{prefix}_ms" if stat == "median" else f"{prefix}_{stat}_ms"
            figures[name] = round(value, 1)
            units[name] = "ms"
    figures["import_ratio"] = round(app["median"] / baseline["median"], 3)
    units["import_ratio"] = "x"

    return {
        "figures": figures,
        "units": units,
        "goals": {"import_ratio": {"max": RATIO_GOAL}},
        "info": {
            "runs_per_kind": runs,
            "warmup_runs_discarded": 1,
            "python": sys.executable,
            "import_ratio": "median import_app_ms / median import_baseline_ms",
            "first_request": "import app + Client(app.app, stage_name='local') + GET /v1/health"
            " (the chalice.test import in between is not timed); touches no database",
            "samples_ms": {kind: [round(v, 1) for v in values] for kind, values in samples.items()},
        },
    }
