"""Hot reload: atomic swap, a broken edit keeps the old set serving, every revision archived."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from proctor.errors import VerificationError
from proctor.events.schema import Risk
from proctor.policy.archive import PolicyArchive
from proctor.policy.live import LivePolicies
from proctor.policy.loader import PolicyError
from tests.policy.conftest import request

LOW = Risk(score=0, level="low")
READ = '@id("read") permit(principal, action == Action::"read", resource);\n'
WRITE = '@id("write") permit(principal, action == Action::"write", resource);\n'


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # make sure the change shows even on coarse mtime file systems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_reload_swaps_archives_and_reports(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    _write(d / "a.cedar", READ)
    seen: list[tuple[str, str]] = []
    errors: list[PolicyError] = []
    archive = PolicyArchive(tmp_path / "archive.sqlite")
    live = LivePolicies(
        d,
        archive=archive,
        on_reload=lambda a, b: seen.append((a, b.revision)),
        on_error=errors.append,
    )
    first = live.revision
    write_req = request(action={"class": "write"})
    assert live.engine.decide(write_req, LOW).effect == "deny"
    assert not live.reload_if_changed()  # nothing changed

    _write(d / "a.cedar", READ + WRITE)
    assert live.reload_if_changed()
    second = live.revision
    assert seen == [(first, second)]
    assert live.engine.decide(write_req, LOW).effect == "allow"

    _write(d / "a.cedar", READ + "permit(principal, action, resource) when {")  # broken edit
    assert not live.reload_if_changed()
    assert live.revision == second  # the loaded set keeps serving
    assert errors and "a.cedar:2" in str(errors[0])
    assert live.last_error is errors[0]

    assert [r for r, _ in archive.revisions()] == [first, second]
    old = archive.get(first)
    assert old is not None and set(old.policies) == {"read"}
    assert archive.get("0" * 64) is None


def test_watcher_picks_up_a_change(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    _write(d / "a.cedar", READ)
    live = LivePolicies(d)
    live.watch(0.05)
    try:
        _write(d / "b.cedar", WRITE)
        deadline = time.monotonic() + 10
        while "write" not in live.engine.bundle.policies and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "write" in live.engine.bundle.policies
    finally:
        live.close()


def test_a_broken_directory_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no \.cedar files"):
        LivePolicies(tmp_path)


def test_an_altered_archive_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    _write(d / "a.cedar", READ)
    path = tmp_path / "archive.sqlite"
    live = LivePolicies(d, archive=PolicyArchive(path))
    rev = live.revision
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE revisions SET files = '{}'")
    db.execute("DROP TRIGGER revisions_append_only_u")  # someone with the file can
    db.execute("UPDATE revisions SET files = ?", (json.dumps({"a.cedar": WRITE}),))
    db.commit()
    with pytest.raises(VerificationError, match="does not hash to it"):
        PolicyArchive(path).get(rev)
