"""What keeps a cold container cheap, checked where a change could undo it silently
(the figures themselves are measured by `python -m bench --only coldstart`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: in this one, other tests have long since used the models.
_BUILT_AT_IMPORT = """
import app
from chalicelib.models.common import RequestModel, ResponseModel

def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)

built = sorted(m.__name__ for base in (RequestModel, ResponseModel) for m in every(base)
               if m.__pydantic_complete__)
print(len(list(every(RequestModel))) + len(list(every(ResponseModel))), built)
"""


def test_given_a_fresh_interpreter_when_the_app_is_imported_then_no_model_is_built() -> None:
    """Every route names its models, so importing the app creates all of them; their
    validators and serializers wait for a request that uses them (defer_build)."""
    proc = subprocess.run(
        [sys.executable, "-c", _BUILT_AT_IMPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    count, built = proc.stdout.strip().split(" ", 1)
    assert int(count) > 20  # the API's models were all created...
    assert built == "[]"  # ...and none of them built


# Route modules that name their models and domain code lazily (chalicelib/lazy.py).
_LAZY_AT_IMPORT = """
import sys
import app
lazy = ["chalicelib.models.coupons", "chalicelib.models.rewards",
        "chalicelib.domain.redemptions", "chalicelib.domain.rewards",
        "chalicelib.domain.coupon_issue", "chalicelib.domain.coupon_templates",
        "cryptography", "chalicelib.dal.crypto"]
print(sorted(name for name in lazy if name in sys.modules))
"""


def test_given_a_fresh_interpreter_when_the_app_is_imported_then_mall_and_coupon_code_waits() -> (
    None
):
    """The mall's and coupons' models and domain modules are imported by the first request
    that uses them, not by every cold start (their routes name them as "module:Class").
    So is `cryptography` (personal data at rest): the DAL imports it on first use."""
    proc = subprocess.run(
        [sys.executable, "-c", _LAZY_AT_IMPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "[]"


def test_given_lazy_route_models_when_the_document_is_built_then_they_resolve() -> None:
    import app  # noqa: F401  (registers the routes)
    from chalicelib.api.http import OPERATIONS

    lazy = [op for op in OPERATIONS if isinstance(op.body_ref or op.response_ref, str)]
    assert lazy  # the mall's and coupons' routes
    for op in lazy:
        assert op.response is not None
        assert op.response.__module__ == str(op.response_ref).partition(":")[0]


def test_given_the_services_when_built_then_every_item_class_uses_one_client(
    moto_tables: dict[str, str],
) -> None:
    from chalicelib.dal.tables import ALL_MODELS
    from chalicelib.wiring import services

    services()
    clients: set[int] = {id(_client_of(model)) for model in ALL_MODELS}
    assert len(ALL_MODELS) > 1
    assert len(clients) == 1


def _client_of(model: Any) -> Any:
    return model._get_connection().connection.client
