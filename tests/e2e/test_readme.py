"""The README's 'Try it' examples, run as written against the running local stack."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_given_the_readme_when_its_examples_run_in_a_shell_then_every_command_succeeds(stack):
    blocks = readme_blocks()
    assert len(blocks) >= 6
    # Every curl without --fail-with-body is the documented 409: check it by its output.
    script = "set -euo pipefail\n" + "\necho '<<block>>'\n".join(blocks)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "API": stack.base_url,
        "LOYALTY_STACK_STATE": str(stack.state_path),
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outputs = done.stdout.split("<<block>>")
    assert len(outputs) == len(blocks)
    assert '"MEMBER_EXISTS"' in done.stdout
    assert '"status":"ok"' in done.stdout
    assert '"STORE_INACTIVE"' in done.stdout  # the closed store's POS, refused
    assert '"queued"' in outputs[-1]
