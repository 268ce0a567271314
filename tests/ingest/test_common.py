"""The shared parts: RFC 3339 times of other systems, error texts, the checked event builder."""

from __future__ import annotations

import pytest

from proctor.events import format_time
from proctor.ingest import IngestError
from proctor.ingest._common import Draft, rfc3339_ns

from .helpers import RECEIVED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T11:19:58Z", "2026-11-23T11:19:58.000000000Z"),
        ("2026-11-23t11:19:58.1z", "2026-11-23T11:19:58.100000000Z"),
        ("2026-11-23T11:19:58.123456789Z", "2026-11-23T11:19:58.123456789Z"),
        ("2026-11-24T00:49:58.5+13:30", "2026-11-23T11:19:58.500000000Z"),
        ("2026-11-23T00:00:00-00:00", "2026-11-23T00:00:00.000000000Z"),
        ("0001-01-01T00:00:00+00:01", None),  # before year 1 in UTC
        ("2026-11-23T11:19:58.1234567891Z", None),
        ("2026-11-23T11:19:58", None),
        ("2026-11-23T11:19:58+24:00", None),
        ("2026-11-23T11:19:60Z", None),
        ("２026-11-23T11:19:58Z", None),  # non-ASCII digits
    ],
)
def test_rfc3339(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(IngestError) as caught:
            rfc3339_ns(text, "$.t")
        assert str(caught.value).startswith("$.t: ")
    else:
        assert format_time(rfc3339_ns(text, "$.t")) == expected


def test_error_text_names_item_line_field_and_offset() -> None:
    error = IngestError("expected SP", field="HOSTNAME", offset=17)
    assert str(error) == "HOSTNAME: expected SP (at byte 17)"
    assert str(error.at(4, 9)) == "item 4, line 9: HOSTNAME: expected SP (at byte 17)"
    assert str(IngestError("bad").at(0)) == "item 0: bad"


def test_a_value_the_schema_refuses_is_named_by_its_event_path() -> None:
    draft = Draft(system="syslog", fmt="syslog.rfc5424", raw=b"x", received=RECEIVED)
    draft.attributes["Not A Slug"] = "x"
    with pytest.raises(IngestError) as caught:
        draft.build(time_ns=0)
    assert str(caught.value) == (
        "event $.attributes['Not A Slug']: the mapped value does not fit proctor.access/v1"
    )
