"""Starts the whole local stack (`python -m local.stack`, what `make run` runs) once for
the e2e session, on free ports and in memory, and talks to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.stack_process import StackDidNotStart, local_stack

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
    with ExitStack() as running:
        try:
            state = running.enter_context(local_stack(data_dir))
        except StackDidNotStart as exc:
            pytest.fail(str(exc))
        yield Stack(state["api"], state, data_dir / "stack.json", log_path)


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
