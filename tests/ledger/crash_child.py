"""Child process for the crash test: appends under load and reports each acknowledged index.

Run as ``python crash_child.py DB RUN``; prints ``index run thread seq`` lines, flushed, only
after ``append`` returned (the entry is durable at level ``os``).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from proctor.ledger.appender import Appender, AppenderConfig
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore


def body(run: int, thread: int, seq: int) -> bytes:
    """The entry a (run, thread, seq) triple appends; the parent recomputes it."""
    return b'{"run":%d,"thread":%d,"seq":%d,"pad":"%s"}' % (run, thread, seq, b"p" * (seq % 97))


def main() -> None:
    db, run, skey = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    signer = Signer.from_skey(skey)
    store = SqliteStore(db)
    if store.get_meta("origin") is None:
        store.init_meta({"origin": signer.name, "vkey": signer.verifier.vkey})
    app = Appender(
        store, signer, signer.name, AppenderConfig(checkpoint_every=500, checkpoint_interval_ms=20)
    )
    lock = threading.Lock()

    def produce(t: int) -> None:
        seq = 0
        while True:
            n = 1 + seq % 7
            first = app.append_many([body(run, t, seq + k) for k in range(n)])
            with lock:
                for k in range(n):
                    sys.stdout.write(f"{first + k} {run} {t} {seq + k}\n")
                sys.stdout.flush()
            seq += n

    print("ready", flush=True)
    threads = [threading.Thread(target=produce, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    main()
