"""The whole local stack (`python -m local.stack --in-memory`, what `make run` runs) as a
subprocess: on free ports, in its own process group, in memory, with its state file and
log in a folder of the caller's. Used by the e2e tests and the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0


class StackDidNotStart(RuntimeError):
    """The stack exited, or wrote no stack.json in time; the message ends with its log."""


def _quiet(message: str) -> None:
    pass


@contextmanager
def local_stack(data_dir: Path, log: Callable[[str], None] = _quiet) -> Iterator[dict[str, Any]]:
    """`python -m local.stack --in-memory` on free ports, in its own process group, with
    `data_dir` as its data folder (log in stack.log); yields the state it writes to
    data_dir/stack.json once it is up. Stopped with SIGINT (then killed, group and all)
    however the block ends."""
    from local import ddb

    port, ddb_port, moto_port = ddb.free_port(), ddb.free_port(), ddb.free_port()
    log_path = data_dir / "stack.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    log(f"starting the local stack (API {port}, DynamoDB Local {ddb_port}, log {log_path})")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.stack",
                "--port",
                str(port),
                "--ddb-port",
                str(ddb_port),
                "--moto-port",
                str(moto_port),
                "--data-dir",
                str(data_dir),
                "--in-memory",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        state_path = data_dir / "stack.json"
        deadline = time.monotonic() + START_TIMEOUT
        while not state_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise StackDidNotStart(f"the local stack did not start:\n{tail}")
            time.sleep(0.2)
        yield json.loads(state_path.read_text())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log("local stack stopped")
