"""Reading the record: entries with their proofs, the signed checkpoint, verification, sessions.

Reading audit data is itself an access: each read is recorded in the ledger (a ``query``
event on target ``proctor-api``: who, what, from where) and awaited before the answer is
sent, like every other access through Proctor (no log, no access).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from proctor.errors import UsageError
from proctor.events import (
    Action,
    Actor,
    Event,
    Source,
    Target,
    decode_event,
    format_time,
    new_event_id,
)
from proctor.exports.stream import Formatter, ledger_indexes, ledger_range, make_formatter
from proctor.ledger.ledger import DB_NAME
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import verify_ledger
from proctor.privacy.erasure import erase_subject_async
from proctor.privacy.seal import unseal
from proctor.search import matching_indexes
from proctor.service.app import ApiError, ServiceState, SessionControl, role, state_of
from proctor.service.auth import Caller

__all__ = ["record_access", "router"]

router = APIRouter(tags=["audit"])

API_TARGET = "proctor-api"


async def record_access(
    request: Request, who: Caller, operation: str, detail: str | None = None
) -> int:
    """Append the record of this read (awaited); its ledger index."""
    state = state_of(request)
    ip = request.client.host if request.client is not None else None
    now, clock = state.ledger.clock.now()
    event = Event(
        id=new_event_id(),
        kind="query",
        time=format_time(now),
        clock=clock,
        actor=Actor(
            id=who.name,
            kind="human" if who.method == "jwt" else "service",
            roles=tuple(sorted(who.roles)),
            auth_method=who.method,
            ip=ip,
        ),
        target=Target(type=API_TARGET, name=state.instance),
        action=Action(class_="read", operation=operation, statement=detail),
        source=Source(system="proctor", gateway=state.instance),
    )
    return await state.ledger.append_async(event)


class EntryOut(BaseModel):
    """One ledger entry, its event, and a receipt proving it is in the signed log."""

    index: int
    event: dict[str, Any]
    """The event as stored, or with ``unseal`` its readable view (personal fields back)."""
    personal: str = Field(
        description="clear (nothing sealed), sealed (not asked to unseal), unsealed, or erased"
    )
    entry: str = Field(description="The exact canonical bytes the leaf hash covers (UTF-8).")
    receipt: str = Field(description="A C2SP tlog-proof against a signed checkpoint.")


@router.get("/v1/entries/{index}", summary="One entry with its inclusion receipt")
async def get_entry(
    request: Request,
    index: Annotated[int, Path(ge=0, le=2**53 - 1)],
    who: Annotated[Caller, Depends(role("auditor"))],
    unseal_fields: Annotated[
        bool, Query(alias="unseal", description="Open the sealed personal fields.")
    ] = False,
) -> EntryOut:
    """The event at ``index`` and a receipt an auditor checks with the verifier key alone."""
    state = state_of(request)
    size = await asyncio.to_thread(state.ledger.size)
    if index >= size:
        raise ApiError(404, f"no entry at index {index} (the ledger has {size})")
    await record_access(request, who, "entry.unseal" if unseal_fields else "entry", str(index))
    data = await asyncio.to_thread(state.ledger.entry, index)
    receipt = await asyncio.to_thread(state.ledger.prove, index)
    event = decode_event(data)
    personal = "clear" if event.sealed is None else "sealed"
    view: dict[str, Any] = msgspec.json.decode(data)
    if unseal_fields and event.sealed is not None:
        keys = state.keys
        opened = unseal(event, (lambda s, k: None) if keys is None else keys.key)
        personal = opened.state
        view = msgspec.to_builtins(opened.event)
    return EntryOut(
        index=index,
        event=view,
        personal=personal,
        entry=data.decode(),
        receipt=receipt.text(),
    )


@router.get(
    "/v1/checkpoint",
    summary="The latest signed checkpoint (C2SP signed note)",
    response_class=PlainTextResponse,
)
async def get_checkpoint(
    request: Request, who: Annotated[Caller, Depends(role("auditor"))]
) -> PlainTextResponse:
    """Signs a new checkpoint first if entries were appended since the last one."""
    state = state_of(request)
    note = await asyncio.to_thread(state.ledger.checkpoint)
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


_MEDIA: Final = {
    "jsonl": "application/x-ndjson",
    "ocsf": "application/x-ndjson",
    "ecs": "application/x-ndjson",
    "cef": "text/plain; charset=utf-8",
    "syslog": "text/plain; charset=utf-8",
}
_EXPORT_CHUNK: Final = 256  # records per chunk written to the socket


def _chunks(formatter: Formatter, entries: Iterable[tuple[int, bytes]]) -> Iterator[bytes]:
    """Formatted records, joined a few hundred at a time; read and formatted in a worker
    thread (Starlette iterates a plain iterator off the event loop), so memory stays flat."""
    batch: list[bytes] = []
    for index, raw in entries:
        batch.append(formatter.format(index, raw))
        if len(batch) >= _EXPORT_CHUNK:
            yield b"".join(batch)
            batch.clear()
    if batch:
        yield b"".join(batch)


@router.get(
    "/v1/export",
    summary="Stream entries in a standard format (JSON lines, OCSF, ECS, CEF, syslog)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/plain": {}}}},
)
async def export_entries(
    request: Request,
    who: Annotated[Caller, Depends(role("auditor"))],
    export_format: Annotated[
        Literal["jsonl", "ocsf", "ecs", "cef", "syslog"], Query(alias="format")
    ] = "jsonl",
    start: Annotated[int, Query(alias="from", ge=0, le=2**53 - 1)] = 0,
    end: Annotated[int | None, Query(alias="to", ge=0, le=2**53 - 1)] = None,
    q: Annotated[
        str | None, Query(max_length=4096, description="Only events this search matches.")
    ] = None,
) -> StreamingResponse:
    """Entries ``from <= index < to`` (to: the size when the export starts), or with ``q``
    those of them the search matches, one record per line, streamed with flat memory.
    ``jsonl`` lines are the exact bytes the leaves hash."""
    state = state_of(request)
    detail = f"{start}-{end or ''}" + (f" {q}" if q else "")
    await record_access(request, who, f"export.{export_format}", detail)
    formatter = make_formatter(export_format, log_name=state.instance)
    entries: Iterable[tuple[int, bytes]]
    if q is None:
        entries = ledger_range(state.ledger, start, end)
    else:
        from proctor.service.search_routes import searcher_of  # noqa: PLC0415 (imports us)

        index = await asyncio.to_thread(searcher_of(state).index)
        hits = matching_indexes(index, q, order="asc")  # a bad query fails here, before 200
        first = next(hits, None)
        chosen = (
            i
            for i in itertools.chain(() if first is None else (first,), hits)
            if i >= start and (end is None or i < end)
        )
        entries = ledger_indexes(state.ledger, chosen)
    return StreamingResponse(_chunks(formatter, entries), media_type=_MEDIA[export_format])


class VerifyOut(BaseModel):
    """The result of verifying the whole ledger (see docs/ledger.md, Verification)."""

    ok: bool
    entries: int
    checkpoints: int
    valid_checkpoints: int
    verified_size: int
    pruned: int = 0
    """Entries below the retention floor: absent by design, their leaf hashes verified."""
    findings: list[dict[str, Any]]


def _verify(state: ServiceState) -> dict[str, object]:
    store = SqliteStore(state.ledger.directory / DB_NAME, readonly=True)
    try:
        return verify_ledger(store, [state.ledger.verifier], state.ledger.origin).to_dict()
    finally:
        store.close()


@router.get("/v1/verify", summary="Verify the whole ledger against its signed checkpoints")
async def verify(request: Request, who: Annotated[Caller, Depends(role("auditor"))]) -> VerifyOut:
    """Re-hashes every entry and checks every checkpoint; ``ok`` is false on any finding."""
    state = state_of(request)
    await record_access(request, who, "verify")
    return VerifyOut.model_validate(await asyncio.to_thread(_verify, state))


class ErasureIn(BaseModel):
    """Whose personal data to erase, and why (recorded)."""

    subject: str = Field(min_length=1, max_length=256, description="The subject (actor id).")
    reason: str = Field(min_length=1, max_length=1024)


class ErasureOut(BaseModel):
    """A finished erasure: the keys destroyed and the ledger index of its ``erasure`` event."""

    subject: str
    key_ids: list[str]
    index: int


@router.post("/v1/erasures", summary="Erase a subject's personal data (GDPR)", tags=["privacy"])
async def erase(
    request: Request, body: ErasureIn, who: Annotated[Caller, Depends(role("admin"))]
) -> ErasureOut:
    """Destroys the subject's keys: their sealed fields become unreadable, the ledger still
    verifies, and the erasure is itself an event."""
    state = state_of(request)
    if state.keys is None:
        raise ApiError(404, "personal fields are not sealed here (no [privacy] in proctor.toml)")
    done = await erase_subject_async(
        state.keys,
        state.ledger.append_async,
        body.subject,
        reason=body.reason,
        by=who.name,
        instance=state.instance,
    )
    return ErasureOut(subject=done.subject, key_ids=list(done.key_ids), index=done.index)


class SessionOut(BaseModel):
    """A live gateway session."""

    id: str
    user: str
    client: str
    target: str
    started: str
    statements: int
    denied: int
    risk: int


class RevokeIn(BaseModel):
    """Which sessions to cut: every session of ``user``, or the one ``session``."""

    user: str | None = Field(default=None, max_length=256)
    session: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="revoked by an administrator", max_length=1024)


class RevokeOut(BaseModel):
    """How many sessions were cut."""

    revoked: int


def _sessions(state: ServiceState) -> SessionControl:
    if state.sessions is None:
        raise ApiError(404, "no gateway runs beside this API (started with --api-only)")
    return state.sessions


@router.get("/v1/sessions", summary="Live gateway sessions", tags=["sessions"])
async def list_sessions(
    request: Request, who: Annotated[Caller, Depends(role("auditor"))]
) -> list[SessionOut]:
    """User, client, target, start, statement counts and current risk of each live session."""
    control = _sessions(state_of(request))
    return [SessionOut.model_validate(s) for s in control.list()]


@router.post("/v1/sessions/revoke", summary="Cut live sessions now", tags=["sessions"])
async def revoke_sessions(
    request: Request, body: RevokeIn, who: Annotated[Caller, Depends(role("admin"))]
) -> RevokeOut:
    """The client gets a FATAL error and the ledger a ``session.revoked`` naming the reason."""
    control = _sessions(state_of(request))
    if (body.user is None) == (body.session is None):
        raise UsageError("give user or session (one of them)")
    reason = f"{body.reason} (by {who.name})"
    return RevokeOut(revoked=control.revoke(body.user, body.session, reason))
