"""Every AWS call a Lambda function's code makes, checked against that function's role.

The local stack and moto enforce no IAM, so a missing permission would only show in AWS.
While the tests run, every botocore call (boto3 clients and pynamodb alike go through
`BaseClient._make_api_call`) is recorded with the function whose code made it and the
template resource it names; at the end of each test every recorded call must be allowed
by that function's role as the merge template (infra/resources.json) defines it.

- Which function: the outermost frame on the stack that is an entry point of a Lambda
  function. Entry points are derived from app.py, not listed: each event handler shim,
  the functions it imports lazily from `chalicelib.handlers`, and transitively what those
  call in their own module or import lazily (so a new job task dispatched by the jobs
  worker belongs to OnJobTask without a line here). A helper reached from two functions
  (e.g. `grant_activity`) is attributed through its caller. HTTP requests through
  Chalice's test client are APIHandler. Calls made by the tests themselves (seeding,
  reading queues) are outside every entry point and are not checked.
- Which resource: the table, queue or bus name in the call, mapped back to its template
  resource through the environment variable that names it (the template's Globals).
- Which IAM action: the operation, with AWS's rules: a transaction needs the per-item
  action on each item (Put -> dynamodb:PutItem, ConditionCheck ->
  dynamodb:ConditionCheckItem...), SendMessageBatch is sqs:SendMessage, a query on an
  index is authorised on the index's ARN.
- The role: the managed policies and inline policies the template gives the function's
  role, with ARNs resolved symbolically and `dynamodb:LeadingKeys` conditions evaluated
  against the partition keys the call touches.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import os
import re
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "resources.json"
REGION, ACCOUNT = "region", "account"


@dataclass(frozen=True)
class Request:
    """One IAM authorisation a call needs."""

    function: str  # logical id of the Lambda function (APIHandler, OnJobTask...)
    action: str  # dynamodb:PutItem
    resource: str  # template logical id, or "<table>/index/<name>", or "?<name>"
    keys: tuple[str, ...] = ()  # partition key values touched (dynamodb:LeadingKeys)
    operation: str = ""  # the API operation, for messages

    def describe(self) -> str:
        keys = f" keys={list(self.keys)}" if self.keys else ""
        return f"{self.function}: {self.action} on {self.resource}{keys} ({self.operation})"


# ---- which function is calling ----------------------------------------------------------


def _function_node(func: FunctionType) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    node = ast.parse(source).body[0]
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _callees(func: FunctionType) -> list[FunctionType]:
    """Functions `func` reaches by a lazy import from chalicelib.handlers, or by name in
    its own module (a record handler passed to a batch processor, a private helper)."""
    node = _function_node(func)
    if node is None:
        return []
    module = sys.modules[func.__module__]
    found: list[FunctionType] = []
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.ImportFrom)
            and sub.module
            and sub.module.startswith("chalicelib.handlers")
        ):
            imported = importlib.import_module(sub.module)
            for alias in sub.names:
                target = getattr(imported, alias.name, None)
                if isinstance(target, FunctionType):
                    found.append(target)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            target = getattr(module, sub.id, None)
            if isinstance(target, FunctionType) and target.__module__ == module.__name__:
                found.append(target)
    return found


@lru_cache(maxsize=1)
def _entry_functions() -> dict[FunctionType, str]:
    """Entry-point function -> the Lambda function (logical id) it belongs to."""
    from chalice.app import Chalice

    import app as app_module
    from local.pipeline import logical_id

    reached: dict[FunctionType, set[str]] = {}
    for source in app_module.app.event_sources:
        function = logical_id(source.name)
        todo = [getattr(app_module, source.name).func]
        seen: set[FunctionType] = set()
        while todo:
            func = todo.pop()
            if func in seen:
                continue
            seen.add(func)
            reached.setdefault(func, set()).add(function)
            todo.extend(_callees(func))
    out: dict[FunctionType, str] = {Chalice.__call__: "APIHandler"}  # type: ignore[dict-item]
    for func, functions in reached.items():
        if len(functions) == 1:  # shared helpers are attributed through their callers
            out[func] = next(iter(functions))
    return out


def entry_points() -> dict[str, set[str]]:
    """Lambda function logical id -> its entry points as 'module:qualname'."""
    out: dict[str, set[str]] = {}
    for func, function in _entry_functions().items():
        out.setdefault(function, set()).add(f"{func.__module__}:{func.__qualname__}")
    return out


@lru_cache(maxsize=1)
def _entry_codes() -> dict[CodeType, str]:
    return {func.__code__: function for func, function in _entry_functions().items()}


def calling_function(frame: FrameType | None) -> str | None:
    """The Lambda function whose entry point is the outermost on the stack."""
    codes = _entry_codes()
    found = None
    while frame is not None:
        function = codes.get(frame.f_code)
        if function is not None:
            found = function
        frame = frame.f_back
    return found


# ---- what the call needs ----------------------------------------------------------------

_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


@lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())  # type: ignore[no-any-return]


def _env_resources() -> dict[str, str]:
    """Environment variable -> template resource it names (the template's Globals)."""
    variables = _template()["Globals"]["Function"]["Environment"]["Variables"]
    return {
        name: value["Ref"]
        for name, value in variables.items()
        if isinstance(value, dict) and set(value) == {"Ref"}
    }


def resource_named(name: str | None, environ: dict[str, str]) -> str:
    """The template resource whose environment variable holds `name` (a table name,
    queue URL or bus name), or '?<name>' when none does."""
    for variable, resource in _env_resources().items():
        if name and environ.get(variable) == name:
            return resource
    return f"?{name}"


def _hash_key(table: str) -> str:
    props = _template()["Resources"].get(table, {}).get("Properties", {})
    for key in props.get("KeySchema", []):
        if key["KeyType"] == "HASH":
            return str(key["AttributeName"])
    return "pk"


def _key_value(table: str, item: dict[str, Any] | None) -> tuple[str, ...]:
    value = (item or {}).get(_hash_key(table))
    if isinstance(value, dict) and len(value) == 1:
        return (str(next(iter(value.values()))),)
    return ()


def _query_key(table: str, params: dict[str, Any]) -> tuple[str, ...]:
    """The partition key value of a table query (`#n = :v` on the hash key)."""
    if params.get("IndexName"):
        return ()
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    hash_key = _hash_key(table)
    expression = str(params.get("KeyConditionExpression", ""))
    for name, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)", expression):
        if names.get(name, name) == hash_key:
            return _key_value(table, {hash_key: values.get(placeholder)})
    return ()


def requests_for(
    function: str, service: str, operation: str, params: dict[str, Any], environ: dict[str, str]
) -> list[Request]:
    def table_request(action: str, table_name: str | None, keys: tuple[str, ...] = ()) -> Request:
        return Request(
            function, f"dynamodb:{action}", resource_named(table_name, environ), keys, operation
        )

    if service == "dynamodb":
        if operation in ("TransactWriteItems", "TransactGetItems"):
            out = []
            for entry in params.get("TransactItems", []):
                ((kind, body),) = entry.items()
                table = resource_named(body.get("TableName"), environ)
                keys = _key_value(table, body.get("Item") or body.get("Key"))
                out.append(table_request(_TRANSACT_ACTIONS[kind], body.get("TableName"), keys))
            return out
        if operation in ("BatchGetItem", "BatchWriteItem"):
            out = []
            for table_name, body in (params.get("RequestItems") or {}).items():
                table = resource_named(table_name, environ)
                if operation == "BatchGetItem":
                    items = body.get("Keys", [])
                else:
                    items = [
                        (w.get("PutRequest") or {}).get("Item")
                        or (w.get("DeleteRequest") or {}).get("Key")
                        for w in body
                    ]
                keys = tuple(sorted({k for item in items for k in _key_value(table, item)}))
                out.append(table_request(operation, table_name, keys))
            return out
        table = resource_named(params.get("TableName"), environ)
        if operation in ("Query", "Scan") and params.get("IndexName"):
            return [
                Request(
                    function,
                    f"dynamodb:{operation}",
                    f"{table}/index/{params['IndexName']}",
                    (),
                    operation,
                )
            ]
        if operation == "Query":
            return [table_request("Query", params.get("TableName"), _query_key(table, params))]
        keys = _key_value(table, params.get("Key") or params.get("Item"))
        return [table_request(operation, params.get("TableName"), keys)]
    if service == "sqs":
        action = _SQS_BATCH_ACTIONS.get(operation, operation)
        queue = resource_named(params.get("QueueUrl"), environ)
        return [Request(function, f"sqs:{action}", queue, (), operation)]
    if service == "kms":
        key = resource_named(params.get("KeyId"), environ)
        return [Request(function, f"kms:{operation}", key, (), operation)]
    if service == "cognito-idp":
        pool = resource_named(params.get("UserPoolId"), environ)
        return [Request(function, f"cognito-idp:{operation}", pool, (), operation)]
    if service == "secretsmanager":
        secret_id = params.get("SecretId")
        resource = next(
            (
                named
                for setting, named in SECRET_OF_SETTING.items()
                if secret_id and environ.get(setting) == secret_id
            ),
            f"?{secret_id}",
        )
        return [Request(function, f"secretsmanager:{operation}", resource, (), operation)]
    if service == "events" and operation == "PutEvents":
        buses = {entry.get("EventBusName", "default") for entry in params.get("Entries", [])}
        return [
            Request(function, "events:PutEvents", resource_named(bus, environ), (), operation)
            for bus in sorted(buses)
        ]
    return [Request(function, f"{service}:{operation}", "?", (), operation)]


# ---- the recorder -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def record(self, client: Any, operation: str, params: dict[str, Any]) -> None:
        function = calling_function(sys._getframe(2))
        if function is None:
            return
        service = client.meta.service_model.service_name
        found = requests_for(function, service, operation, params, dict(os.environ))
        with self._lock:
            self.requests.extend(found)


_active: list[Recorder] = []


def _record_use(*requests: tuple[str, str, tuple[str, ...]]) -> None:
    """A key was used that a container fetches once and caches (the hash key, the
    program's KEK): the function using it must be allowed to fetch it, even when another
    function of this test process fetched it first."""
    if not _active:
        return
    function = calling_function(sys._getframe(2))
    if function is None:
        return
    for recorder in list(_active):
        with recorder._lock:
            for action, resource, keys in requests:
                recorder.requests.append(Request(function, action, resource, keys, "use"))


SECRET_OF_SETTING = {
    "PII_HASH_KEY_SECRET_ID": "PiiHashKey",
    "PAYMENT_NOTIFICATION_SECRET_ID": "PaymentNotificationSecret",
}


def _record_secret_setting(setting: str) -> None:
    _record_use(("secretsmanager:GetSecretValue", SECRET_OF_SETTING[setting], ()))


def _record_key_use(create: bool) -> None:
    """The KEK: read from the Program table (KEYRING) and unwrapped by the KMS key;
    a writer may also have to create it (Encrypt, conditional put)."""
    needed = [
        ("dynamodb:GetItem", "ProgramTable", ("KEYRING",)),
        ("kms:Decrypt", "PiiKey", ()),
    ]
    if create:
        needed += [
            ("dynamodb:PutItem", "ProgramTable", ("KEYRING",)),
            ("kms:Encrypt", "PiiKey", ()),
        ]
    _record_use(*needed)


def install() -> None:
    """Wrap botocore's one entry point for every API call, and the users of secrets from
    the environment (once per process)."""
    from botocore.client import BaseClient

    from chalicelib import wiring
    from chalicelib.dal import crypto
    from chalicelib.domain.members import IdentityHasher

    if _record_key_use not in crypto.key_use_hooks:
        crypto.key_use_hooks.append(_record_key_use)
    if _record_secret_setting not in wiring.secret_use_hooks:
        wiring.secret_use_hooks.append(_record_secret_setting)
    if not getattr(IdentityHasher.identity, "_iam_recorder", False):
        hash_identity = IdentityHasher.identity

        def identity(self: Any, kind: str, value: str) -> Any:
            # the hasher's key, from Secrets Manager
            _record_use(("secretsmanager:GetSecretValue", "PiiHashKey", ()))
            return hash_identity(self, kind, value)

        identity._iam_recorder = True  # type: ignore[attr-defined]
        IdentityHasher.identity = identity  # type: ignore[method-assign]

    original: Callable[..., Any] = getattr(BaseClient, "_make_api_call")  # noqa: B009
    if getattr(original, "_iam_recorder", False):
        return

    def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        for recorder in list(_active):
            recorder.record(self, operation_name, api_params)
        return original(self, operation_name, api_params)

    _make_api_call._iam_recorder = True  # type: ignore[attr-defined]
    setattr(BaseClient, "_make_api_call", _make_api_call)  # noqa: B010


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    install()
    recorder = Recorder()
    _active.append(recorder)
    try:
        yield recorder
    finally:
        _active.remove(recorder)


# ---- the roles --------------------------------------------------------------------------


def _arn_of(resource: str, template: dict[str, Any]) -> str:
    """A symbolic ARN with the same shape as the real one."""
    if resource.endswith("/stream"):
        return (
            f"{_arn_of(resource.removesuffix('/stream'), template)}/stream/2026-01-01T00:00:00.000"
        )
    if "/index/" in resource:
        table, index = resource.split("/index/")
        return f"{_arn_of(table, template)}/index/{index}"
    kind = template["Resources"].get(resource, {}).get("Type")
    if kind == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{resource}"
    if kind == "AWS::SQS::Queue":
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{resource}"
    if kind == "AWS::Events::EventBus":
        return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{resource}"
    if kind == "AWS::KMS::Key":
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{resource}"
    if kind == "AWS::Cognito::UserPool":
        return f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{resource}"
    if kind == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{resource}-AbCdEf"
    return f"arn:unknown:{resource}"


def _resolve(value: Any, template: dict[str, Any]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return _arn_of(value["Ref"], template)  # a secret's Ref is its ARN
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        if attribute == "Arn":
            return _arn_of(resource, template)
        if attribute == "StreamArn":
            return f"{_arn_of(resource, template)}/stream/2026-01-01T00:00:00.000"
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
            if name in pseudo:
                return pseudo[name]
            resource, _, attribute = name.partition(".")
            return _resolve({"Fn::GetAtt": [resource, attribute or "Arn"]}, template)

        return re.sub(r"\$\{([^}]+)\}", substitute, value["Fn::Sub"])
    raise ValueError(f"cannot resolve {value!r} in a policy")


def _role_id(function: str) -> str:
    from infra.gen_template import ROLE_OF

    return ROLE_OF.get(function, f"{function}Role")


def role_statements(function: str, template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every statement of the policies the template attaches to the function's role."""
    tpl = template or _template()
    resources = tpl["Resources"]
    role = resources.get(_role_id(function), {}).get("Properties", {})
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        documents.append(resources[arn["Ref"]]["Properties"]["PolicyDocument"])
    return [s for doc in documents for s in _as_list(doc["Statement"])]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(regex, value, flags) is not None


def key_matches(pattern: str, key: str) -> bool:
    """Whether a partition key matches a dynamodb:LeadingKeys StringLike pattern."""
    return _matches(pattern, key)


def _conditions_hold(condition: dict[str, Any] | None, request: Request) -> bool:
    for operator, tests in (condition or {}).items():
        for key, patterns in tests.items():
            if key != "dynamodb:LeadingKeys" or operator not in (
                "ForAllValues:StringLike",
                "ForAllValues:StringEquals",
            ):
                raise ValueError(f"the checker does not evaluate {operator} {key}")
            like = operator.endswith("Like")
            # ForAllValues holds for a request with no keys (as in AWS): a Scan is never
            # limited by LeadingKeys, so grants with keys must not include Scan.
            for value in request.keys:
                if not any(_matches(p, value) if like else p == value for p in _as_list(patterns)):
                    return False
    return True


def allows(statements: list[dict[str, Any]], request: Request, template: dict[str, Any]) -> bool:
    arn = _arn_of(request.resource, template)
    allowed = False
    for statement in statements:
        if "NotAction" in statement or "NotResource" in statement:
            raise ValueError("the checker does not evaluate NotAction/NotResource")
        if not any(
            _matches(a, request.action, ignore_case=True) for a in _as_list(statement["Action"])
        ):
            continue
        if not any(_matches(_resolve(r, template), arn) for r in _as_list(statement["Resource"])):
            continue
        if not _conditions_hold(statement.get("Condition"), request):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def environment(function: str, template: dict[str, Any] | None = None) -> set[str]:
    """The environment variables the template gives the function."""
    tpl = template or _template()
    variables = set(tpl["Globals"]["Function"]["Environment"]["Variables"])
    own = tpl["Resources"].get(function, {}).get("Properties", {}).get("Environment", {})
    return variables | set(own.get("Variables", {}))


def denied(requests: list[Request], template: dict[str, Any] | None = None) -> list[Request]:
    tpl = template or _template()
    out: list[Request] = []
    for request in dict.fromkeys(requests):  # each distinct request once, in order
        if request.action.startswith("secret:"):
            ok = request.resource in environment(request.function, tpl)
        else:
            ok = allows(role_statements(request.function, tpl), request, tpl)
        if not ok:
            out.append(request)
    return out
