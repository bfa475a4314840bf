"""Modules imported when first used, not when the app is imported.

Every Lambda imports app.py, which registers every route, but one request uses the models
and domain code of one area. A route module names its models as "module:Class" strings
(`api/http.operation` resolves them on first use) and reaches its models and domain
modules through a `LazyModule`, so a cold start pays only for what the request runs.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Attribute access imports the module (once; later accesses find it loaded)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


def resolve(reference: Any) -> Any:
    """A "module:Name" reference's object; anything else as it is."""
    if not isinstance(reference, str):
        return reference
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
