"""Legal holds and retention runs over the API (``proctor serve`` holds the writer lock, so
this is how they are done while it runs; see docs/retention.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from proctor.retention.holds import Hold
from proctor.retention.service import Retention
from proctor.service.app import ApiError, ServiceState, role, state_of
from proctor.service.audit_routes import record_access
from proctor.service.auth import Caller

__all__ = ["router"]

router = APIRouter(tags=["retention"])


def _retention(state: ServiceState) -> Retention:
    if state.retention is None:
        raise ApiError(404, "retention is not configured here (no [retention] in proctor.toml)")
    return state.retention


class HoldOut(BaseModel):
    """A legal hold and, once released, who released it, when and why."""

    case_id: str
    description: str
    selector: str
    placed_by: str
    placed_ns: int
    placed_index: int | None
    released: dict[str, Any] | None


def _hold(h: Hold) -> HoldOut:
    released = None
    if h.released is not None:
        released = {k: getattr(h.released, k) for k in h.released.__dataclass_fields__}
    return HoldOut(
        case_id=h.case_id,
        description=h.description,
        selector=h.selector,
        placed_by=h.placed_by,
        placed_ns=h.placed_ns,
        placed_index=h.placed_index,
        released=released,
    )


class HoldIn(BaseModel):
    """A hold to place: the case, what it covers (a selector) and why."""

    case_id: str = Field(min_length=1, max_length=128)
    selector: str = Field(min_length=1, max_length=4096)
    description: str = Field(min_length=1, max_length=4096)


class ReleaseIn(BaseModel):
    """Why a case's hold ends."""

    reason: str = Field(min_length=1, max_length=4096)


@router.get("/v1/holds", summary="Legal holds (in force, or all)")
async def list_holds(
    request: Request,
    who: Annotated[Caller, Depends(role("auditor"))],
    include_released: Annotated[bool, Query(alias="all")] = False,
) -> list[HoldOut]:
    """Holds in force, or every hold ever placed with ``all=true``."""
    holds = _retention(state_of(request)).holds
    found = holds.holds() if include_released else holds.active()
    return [_hold(h) for h in found]


@router.post("/v1/holds", summary="Place a legal hold")
async def place(
    request: Request, body: HoldIn, who: Annotated[Caller, Depends(role("admin"))]
) -> HoldOut:
    """Entries the selector covers are not pruned until the hold is released; placing it is
    recorded in the ledger."""
    retention = _retention(state_of(request))
    hold = await asyncio.to_thread(
        retention.place, body.case_id, body.selector, body.description, who.name
    )
    return _hold(hold)


@router.post("/v1/holds/{case_id}/release", summary="Release a case's legal hold")
async def release(
    request: Request,
    case_id: Annotated[str, Path(min_length=1, max_length=128)],
    body: ReleaseIn,
    who: Annotated[Caller, Depends(role("admin"))],
) -> HoldOut:
    """Recorded in the ledger first, then released (a crash leaves it in force)."""
    retention = _retention(state_of(request))
    return _hold(await asyncio.to_thread(retention.release, case_id, body.reason, who.name))


@router.post("/v1/retention/run", summary="What retention would prune now, and why it stops there")
async def run(request: Request, who: Annotated[Caller, Depends(role("admin"))]) -> dict[str, Any]:
    """A dry run: no endpoint removes anything, so pruning happens only on the configured
    schedule (``interval_s``) or by ``proctor retention run`` on the ledger's host."""
    retention = _retention(state_of(request))
    await record_access(request, who, "retention.dry-run")
    result = await asyncio.to_thread(retention.run, dry_run=True)
    return result.to_dict()
