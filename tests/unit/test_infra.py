"""The merge template wires what Chalice cannot, for every function the app defines."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

import app as app_module
from infra import gen_template
from local.infra import load_template
from local.pipeline import logical_id

ROOT = Path(__file__).resolve().parents[2]


def test_given_the_template_source_then_the_committed_json_is_what_it_renders():
    assert (ROOT / "infra" / "resources.json").read_text() == gen_template.render()


def test_given_each_event_handler_then_the_template_wires_its_source_with_partial_failures():
    resources = load_template()["Resources"]
    for source in app_module.app.event_sources:
        kind = type(source).__name__
        if kind not in ("DynamoDBEventConfig", "SQSEventConfig"):
            continue
        events = resources[logical_id(source.name)]["Properties"]["Events"]
        suffix = "DynamodbEventSource" if kind == "DynamoDBEventConfig" else "SqsEventSource"
        props = events[logical_id(source.name) + suffix]["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        target = props["Stream"] if kind == "DynamoDBEventConfig" else props["Queue"]
        assert set(target) == {"Fn::GetAtt"}, f"{source.name} must not use a literal ARN"


def test_given_each_function_of_the_app_then_the_template_lists_it_for_its_role_and_policy():
    names = {logical_id(s.name) for s in app_module.app.event_sources} | {"APIHandler"}
    assert set(gen_template.ALL_FUNCTIONS) == names


def test_given_the_user_pool_then_no_app_client_can_write_or_name_a_member_id():
    resources = gen_template.template()["Resources"]
    clients = [r for r in resources.values() if r.get("Type") == "AWS::Cognito::UserPoolClient"]
    assert clients
    for client in clients:
        props = client["Properties"]
        # Absent lists mean every attribute, custom ones included, is client-writable.
        assert "WriteAttributes" in props
        assert "ReadAttributes" in props
        assert [a for a in props["WriteAttributes"] if a.startswith("custom:")] == []
        assert "phone_number_verified" in props["ReadAttributes"]
    pool = resources["UserPool"]["Properties"]
    assert "member_id" not in {attribute["Name"] for attribute in pool["Schema"]}
    assert pool["UserAttributeUpdateSettings"] == {
        "AttributesRequireVerificationBeforeUpdate": ["phone_number"]
    }


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_given_make_package_then_the_merged_template_lints_and_the_zip_is_precompiled(
    stage, tmp_path
):
    out = tmp_path / "package"
    # The Makefile's own target (chalice package, precompile, cfn-lint), into a directory
    # of this test; `-o` keeps make from reinstalling the virtualenv.
    made = subprocess.run(
        [
            "make",
            "-o",
            ".venv/bin/.installed",
            "package",
            f"STAGE={stage}",
            f"PACKAGE_DIR={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"AWS_DEFAULT_REGION": "ap-east-1", "PATH": "/usr/bin:/bin"},
    )
    assert made.returncode == 0, made.stdout + made.stderr
    template = json.loads((out / "sam.json").read_text())
    roles = {
        function: resource["Properties"]["Role"]["Fn::GetAtt"][0]
        for function, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(roles) == set(gen_template.ALL_FUNCTIONS)
    assert len(set(roles.values())) == len(roles)  # a role of its own for each function
    for function, role in roles.items():
        properties = template["Resources"][role]["Properties"]
        # Chalice's inline policy (the stage's policy file: logs, traces) stays; data
        # access is the function's own managed policy, from infra/iam.py.
        assert [p["PolicyName"] for p in properties["Policies"]] == [f"{role}Policy"]
        assert properties["ManagedPolicyArns"] == [{"Ref": f"{function}Access"}], function
    # A read-only /var/task keeps no bytecode: without it in the zip every cold start
    # compiles the app and its dependencies again.
    names = set(zipfile.ZipFile(out / "deployment.zip").namelist())
    assert {"app.py", "__pycache__/app.cpython-311.pyc"} <= names
    assert "chalicelib/__pycache__/wiring.cpython-311.pyc" in names


def test_given_the_services_then_every_item_class_shares_one_botocore_session(moto_tables):
    from chalicelib.dal.tables import ALL_MODELS
    from chalicelib.wiring import services

    services()
    sessions = {id(model._get_connection().connection.session) for model in ALL_MODELS}
    assert len(sessions) == 1
