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
