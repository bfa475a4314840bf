"""Starts the whole local stack (`python -m local.stack`, what `make run` runs) once for
the e2e session, on free ports and in memory, and talks to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local import ddb

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    base_url: str
    state: dict[str, Any]
    state_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def env(self) -> dict[str, str]:
        from local.stack import stack_environment

        return stack_environment(
            self.state["ddb_port"], self.state["moto_port"], self.state["queues"]
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    log_path = data_dir / "stack.log"
    port, ddb_port, moto_port = ddb.free_port(), ddb.free_port(), ddb.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    with open(log_path, "wb") as log:
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
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    state_path = data_dir / "stack.json"
    deadline = time.monotonic() + 120
    while not state_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                "local stack did not start:\n" + log_path.read_text(errors="replace")[-4000:]
            )
        time.sleep(0.2)
    state = json.loads(state_path.read_text())
    try:
        yield Stack(state["api"], state, state_path, log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's settings pointed at the running stack (to mint keys, read tables)."""
    from chalicelib.wiring import reset_services

    env = stack.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOYALTY_STACK_STATE", str(stack.state_path))
    reset_services()
    yield env
    reset_services()
