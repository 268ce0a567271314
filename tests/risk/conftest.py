"""A small world for risk tests: geo for a few networks, contexts for session starts."""

from __future__ import annotations

from typing import Any

from proctor.events.context import RequestContext, decode_context
from proctor.risk.network import GeoRow, GeoTable, NetworkClassifier

BERLIN = GeoRow(
    "10.0.0.0/8", country="DE", city="Berlin", lat_e6=52_520_000, lon_e6=13_405_000, asn=64500
)
SAO_PAULO = GeoRow(
    "200.1.0.0/16",
    country="BR",
    city="Sao Paulo",
    lat_e6=-23_550_000,
    lon_e6=-46_633_000,
    asn=28573,
)
NETWORK = NetworkClassifier(
    {"corp": ["10.0.0.0/8"]},
    deny=["203.0.113.0/24"],
    anonymizers=["185.220.100.0/22"],
    geo=GeoTable([BERLIN, SAO_PAULO]),
)


def login(
    user: str = "alice",
    ip: str = "10.1.0.5",
    device: str | None = "alice-laptop",
    time: str = "2026-11-23T09:30:00Z",
    ua: str = "psql/16.2",
    **more: Any,
) -> RequestContext:
    """A session start; geo is left for RiskEngine.enrich to fill in."""
    doc: dict[str, Any] = {
        "principal": {"id": user},
        "action": {"class": "connect"},
        "resource": {"type": "database", "name": "shop"},
        "time": time,
        "network": {"ip": ip},
        "device": {"id": device, "user_agent": ua} if device else {"user_agent": ua},
        "session_start": True,
    }
    doc.update(more)
    return decode_context(doc)
