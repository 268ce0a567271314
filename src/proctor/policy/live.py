"""The policies in force: loaded from a directory, reloaded on change by an atomic swap.

A reload loads the whole directory into a new bundle first (:mod:`loader`); only when that
succeeds does the engine in force change, in one assignment, so a decision sees the old set
or the new one, never a mix. A broken edit leaves the set already loaded serving and is
reported (``last_error``, the log, the ``on_error`` callback). Each reload archives the new
text and calls ``on_reload(old_revision, new_bundle)`` *before* the swap: that is where the
caller writes the ``policy.reloaded`` ledger event (see :func:`proctor.decision.record_reloads`);
if it raises, the new set is not put in force.

Changes are found by polling the directory's listing (names, sizes, modification times):
stdlib only, the same on every file system, and a reload costs nothing unless something
changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from proctor.policy.archive import PolicyArchive
from proctor.policy.engine import EngineConfig, PolicyEngine
from proctor.policy.loader import PolicyBundle, PolicyError, load_policies

__all__ = ["LivePolicies"]

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class LivePolicies:
    """The engine in force for one policy directory, with reload and a watcher thread."""

    def __init__(
        self,
        directory: Path,
        *,
        archive: PolicyArchive | None = None,
        config: EngineConfig | None = None,
        on_reload: Callable[[str, PolicyBundle], None] | None = None,
        on_error: Callable[[PolicyError], None] | None = None,
    ) -> None:
        self.directory = directory
        self.archive = archive or PolicyArchive()
        self.config = config or EngineConfig()
        self.on_reload = on_reload
        self.on_error = on_error
        self.last_error: Exception | None = None
        self._lock = threading.Lock()  # one reload at a time
        self._fingerprint = self._scan()
        bundle = load_policies(directory)  # at start a broken directory is an error: no default
        self.archive.keep(bundle)
        self.engine = PolicyEngine(bundle, self.config)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._swapped: list[Callable[[str], None]] = []

    @property
    def revision(self) -> str:
        """The revision in force."""
        return self.engine.revision

    def reload(self) -> bool:
        """Load the directory again; True when a new revision is now in force."""
        with self._lock:
            self._fingerprint = self._scan()
            try:
                bundle = load_policies(self.directory)
            except PolicyError as exc:
                self.last_error = exc
                log.error("policy reload refused, still serving %s: %s", self.revision[:16], exc)
                if self.on_error is not None:
                    self.on_error(exc)
                return False
            self.last_error = None
            old = self.engine.revision
            if bundle.revision == old:
                return False
            engine = PolicyEngine(bundle, self.config)
            try:
                self.archive.keep(bundle)
                # Recorded before it is in force: if the record cannot be written (the ledger
                # is down), the reload is refused and the old set keeps serving. No log, no
                # change. The next look at the directory tries again.
                if self.on_reload is not None:
                    self.on_reload(old, bundle)
            except Exception as exc:
                self._fingerprint = ()
                self.last_error = exc
                raise
            self.engine = engine  # the atomic swap
        log.info("policies reloaded: %s -> %s", old[:16], bundle.revision[:16])
        for listener in list(self._swapped):
            try:
                listener(bundle.revision)
            except Exception:  # one listener's failure must not stop the others
                log.exception("policy reload listener failed")
        return True

    def on_swap(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(new_revision)`` after each reload is in force (from the reloading
        thread): e.g. the session registry re-decides every live session."""
        self._swapped.append(listener)

    def reload_if_changed(self) -> bool:
        """Reload when the directory's listing changed since the last look."""
        if self._scan() == self._fingerprint:
            return False
        return self.reload()

    def watch(self, interval_s: float = 1.0) -> None:
        """Poll for changes in a background thread until :meth:`close`."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s,), name="policy-watch", daemon=True
        )
        self._watcher.start()

    def close(self) -> None:
        """Stop the watcher."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.reload_if_changed()
            except Exception as exc:  # e.g. the ledger is down: keep serving, try again later
                log.error("policy reload failed: %s", exc)

    def _scan(self) -> Fingerprint:
        out = []
        try:
            for path in sorted(self.directory.rglob("*.cedar")):
                st = path.stat()
                out.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            return ()
        return tuple(out)
