"""Ingestion: records from other systems into the ledger, each item accepted or refused alone.

A 2xx answer means every accepted item is durable in the ledger (the append was awaited);
refused items come back with their error and nothing of them is stored. When the ledger
cannot take the batch, the answer is 503 and nothing of the request was acknowledged.

Every stored event records who sent it (attribute ``proctor.submitted_by``), so an event
pushed through the API can never pass for one Proctor recorded itself; kinds only the ledger
writes (checkpoints, retention, erasure) are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from proctor.errors import EventError
from proctor.events import Event, decode_event
from proctor.ingest import (
    IngestError,
    K8sOptions,
    LinePrefix,
    PgauditOptions,
    Received,
    Result,
    Skipped,
    normalize_k8s_audit,
    normalize_pgaudit_csvlog,
    normalize_pgaudit_stderr,
)
from proctor.service.app import ApiError, ErrorOut, ServiceState, role, state_of
from proctor.service.auth import Caller

__all__ = ["SUBMITTED_BY", "IngestResult", "read_body", "router"]

log = logging.getLogger("proctor.service")

router = APIRouter(tags=["ingest"])

SUBMITTED_BY: Final = "proctor.submitted_by"
RESERVED_KINDS: Final = frozenset({"checkpoint", "retention.pruned", "erasure"})
_MAX_ATTRIBUTES: Final = 64
_NDJSON: Final = ("application/x-ndjson", "application/jsonl", "application/json-lines")


class Accepted(BaseModel):
    """An item stored in the ledger."""

    item: int
    """Position in the request: 0-based in a JSON array, 1-based line number in JSON lines."""
    index: int
    """Its ledger index."""
    id: str


class Rejected(BaseModel):
    """An item refused; nothing of it was stored."""

    item: int
    error: str


class IngestResult(BaseModel):
    """What happened to each item of an ingest request."""

    accepted: list[Accepted]
    rejected: list[Rejected]
    skipped: int = 0
    """Records that are not for this source (log lines that are not pgaudit entries)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is larger than the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def split_items(body: bytes, content_type: str) -> list[tuple[int, bytes]]:
    """The items of a body: one JSON object, a JSON array of them, or JSON lines.

    Each item keeps its position (array index, or line number for JSON lines) for errors.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _NDJSON:
        items = []
        for number, raw_line in enumerate(body.split(b"\n"), start=1):
            if raw_line.strip():
                items.append((number, raw_line.rstrip(b"\r")))
        return items
    if media not in ("application/json", ""):
        raise ApiError(415, f"send application/json or application/x-ndjson, not {media!r}")
    if body.lstrip()[:1] == b"[":
        try:
            raws = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            raise ApiError(422, f"the body is not a JSON array: {exc}") from None
        return [(i, bytes(raw)) for i, raw in enumerate(raws)]
    return [(0, body)]


def _admit(data: bytes, submitter: str) -> Event:
    """The event an item holds, marked with who sent it; ``EventError`` names the problem."""
    event = decode_event(data)
    if event.kind in RESERVED_KINDS:
        raise EventError(f"kind {event.kind!r} is written only by the ledger itself - at `$.kind`")
    return _mark(event, submitter)


def _mark(event: Event, submitter: str) -> Event:
    """``event`` with the attribute that says who sent it."""
    if SUBMITTED_BY in event.attributes:
        raise EventError(f"attribute {SUBMITTED_BY!r} is set by the service - at `$.attributes`")
    if len(event.attributes) >= _MAX_ATTRIBUTES:
        raise EventError(
            f"no room for attribute {SUBMITTED_BY!r} (at most {_MAX_ATTRIBUTES} attributes)"
            " - at `$.attributes`"
        )
    return msgspec.structs.replace(event, attributes={**event.attributes, SUBMITTED_BY: submitter})


async def store(
    state: ServiceState,
    items: Sequence[tuple[int, Event]],
    rejected: list[Rejected],
    skipped: int = 0,
) -> JSONResponse:
    """Append the admitted events in one awaited batch and answer for every item."""
    accepted: list[Accepted] = []
    if items:
        first = await state.ledger.append_many_async([event for _, event in items])
        accepted = [
            Accepted(item=pos, index=first + i, id=event.id) for i, (pos, event) in enumerate(items)
        ]
    result = IngestResult(accepted=accepted, rejected=rejected, skipped=skipped)
    status = 200 if accepted or (skipped and not rejected) else 422
    return JSONResponse(result.model_dump(), status_code=status)


_BODY_DOC: Final = {
    "requestBody": {
        "required": True,
        "description": "One proctor.access/v1 event, a JSON array of them, or JSON lines.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Event"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one event per line"}
            },
        },
    }
}


@router.post(
    "/v1/events",
    summary="Append native proctor.access/v1 events",
    response_model=IngestResult,
    responses={
        422: {
            "model": IngestResult | ErrorOut,
            "description": "no item was accepted (per-item errors), or the body is unusable",
        },
    },
    openapi_extra=_BODY_DOC,
)
async def ingest_events(
    request: Request, who: Annotated[Caller, Depends(role("ingest"))]
) -> JSONResponse:
    """Validate each item against the event schema; store the valid ones, report the rest."""
    state = state_of(request)
    body = await read_body(request, state.max_body_bytes)
    items = split_items(body, request.headers.get("content-type", ""))
    if not items:
        raise ApiError(422, "the body holds no events")
    if len(items) > state.max_items:
        raise ApiError(413, f"{len(items)} items; at most {state.max_items} per request")
    admitted: list[tuple[int, Event]] = []
    rejected: list[Rejected] = []
    for pos, data in items:
        try:
            admitted.append((pos, _admit(data, who.name)))
        except EventError as exc:
            rejected.append(Rejected(item=pos, error=str(exc)))
    log.info("%s: %d events accepted, %d refused", who.name, len(admitted), len(rejected))
    return await store(state, admitted, rejected)


def _received(request: Request, state: ServiceState) -> Received:
    host_port = None
    if request.client is not None:
        host, port = request.client.host, request.client.port
        host_port = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    now, clock = state.ledger.clock.now()
    return Received(at_ns=now, gateway=state.instance, address=host_port, clock=clock)


async def _store_results(
    state: ServiceState, who: Caller, results: Sequence[Result]
) -> JSONResponse:
    """Store the events of a normalizer's results; report its errors and skipped records."""
    admitted: list[tuple[int, Event]] = []
    rejected: list[Rejected] = []
    skipped = 0
    for pos, result in enumerate(results):
        if isinstance(result, Skipped):
            skipped += 1
            continue
        if isinstance(result, IngestError):
            rejected.append(Rejected(item=pos, error=str(result)))
            continue
        try:
            admitted.append((pos, _mark(result, who.name)))
        except EventError as exc:
            rejected.append(Rejected(item=pos, error=str(exc)))
    log.info(
        "%s: %d records accepted, %d refused, %d skipped",
        who.name,
        len(admitted),
        len(rejected),
        skipped,
    )
    if not admitted and not rejected and not skipped:
        raise ApiError(422, "the body holds no records")
    return await store(state, admitted, rejected, skipped)


_Route = TypeVar("_Route", bound=Callable[..., Any])


def _source_route(
    path: str, summary: str, media: str, schema: dict[str, str]
) -> Callable[[_Route], _Route]:
    """The decorator of a route that takes one other system's records as its body."""
    return router.post(
        path,
        summary=summary,
        response_model=IngestResult,
        responses={422: {"model": IngestResult | ErrorOut, "description": "nothing accepted"}},
        openapi_extra={"requestBody": {"required": True, "content": {media: {"schema": schema}}}},
    )


@_source_route(
    "/v1/ingest/k8s",
    "Kubernetes audit webhook (audit.k8s.io/v1 EventList)",
    "application/json",
    {"type": "object"},
)
async def ingest_k8s(
    request: Request,
    who: Annotated[Caller, Depends(role("ingest"))],
    cluster: Annotated[
        str | None, Query(max_length=256, description="The cluster's name (target.name).")
    ] = None,
) -> JSONResponse:
    """Point the API server's webhook backend here (an ingest token as its bearer token).
    Each audit event is stored or refused on its own; the original is kept byte for byte."""
    state = state_of(request)
    body = await read_body(request, state.max_body_bytes)
    options = K8sOptions(cluster=cluster)
    results = await asyncio.to_thread(
        normalize_k8s_audit, body, received=_received(request, state), options=options
    )
    if len(results) > state.max_items:
        raise ApiError(413, f"{len(results)} items; at most {state.max_items} per request")
    return await _store_results(state, who, results)


@_source_route(
    "/v1/ingest/pgaudit",
    "pgaudit entries from PostgreSQL logs (csvlog records or stderr lines)",
    "text/plain",
    {"type": "string"},
)
async def ingest_pgaudit(
    request: Request,
    who: Annotated[Caller, Depends(role("ingest"))],
    log_format: Annotated[
        Literal["csvlog", "stderr"], Query(alias="format", description="How the log is written.")
    ] = "csvlog",
    prefix: Annotated[
        str | None,
        Query(max_length=256, description="The server's log_line_prefix (format=stderr)."),
    ] = None,
    server: Annotated[
        str | None, Query(max_length=256, description="The server's name (target.name).")
    ] = None,
    log_timezone: Annotated[
        str | None, Query(max_length=64, description="The server's log_timezone (IANA name).")
    ] = None,
) -> JSONResponse:
    """Whole log records (a shipper sends complete lines); lines that are not pgaudit
    entries are counted as skipped. Statements are recorded redacted; originals in full."""
    state = state_of(request)
    body = await read_body(request, state.max_body_bytes)
    options = PgauditOptions(server=server, log_timezone=log_timezone)
    received = _received(request, state)
    if log_format == "stderr":
        if prefix is None:
            raise ApiError(422, "prefix: format=stderr needs the server's log_line_prefix")
        results = await asyncio.to_thread(
            normalize_pgaudit_stderr,
            body,
            prefix=LinePrefix(prefix),
            received=received,
            options=options,
        )
    else:
        results = await asyncio.to_thread(
            normalize_pgaudit_csvlog, body, received=received, options=options
        )
    if len(results) > state.max_items:
        raise ApiError(413, f"{len(results)} records; at most {state.max_items} per request")
    return await _store_results(state, who, results)
