"""Program-wide, public routes: health, tiers, the OpenAPI document."""

from __future__ import annotations

from dataclasses import asdict

from chalice.app import Blueprint

from chalicelib.api.http import PUBLIC, Call, operation
from chalicelib.models.common import Health
from chalicelib.models.program import TierBenefitsView, TierList, TierView
from chalicelib.wiring import services

bp = Blueprint(__name__)
VERSION = "0.1.0"


@operation(
    bp,
    "/v1/health",
    "GET",
    access=PUBLIC,
    response=Health,
    tags=("operations",),
    summary="Liveness: answers without touching the database",
)
def health(call: Call) -> Health:
    return Health(status="ok", version=VERSION)


@operation(
    bp,
    "/v1/tiers",
    "GET",
    access=PUBLIC,
    response=TierList,
    tags=("tiers",),
    summary="The program's tiers with thresholds (fen, rolling 12 months) and benefits",
)
def list_tiers(call: Call) -> TierList:
    return TierList(
        tiers=[
            TierView(
                code=t.code,
                name=t.name,
                name_en=t.name_en,
                rank=t.rank,
                qualify_spend=t.qualify_spend,
                retain_spend=t.retain_spend,
                benefits=TierBenefitsView(**asdict(t.benefits)),
            )
            for t in services().program.tiers()
        ]
    )


@operation(
    bp,
    "/v1/openapi.json",
    "GET",
    access=PUBLIC,
    tags=("operations",),
    summary="This API as OpenAPI 3.1, generated from the models that validate requests",
)
def openapi_document(call: Call) -> dict[str, object]:
    from chalicelib.api.openapi import build_openapi

    return build_openapi(VERSION)
