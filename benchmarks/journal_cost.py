"""What the outcome journal costs a message: one ``on_wire`` line, one ``outcome`` line, and
a share of the per-batch restart, measured on a real file in the given folder (default:
a temporary one) in CPU time (the process's, system calls included: wall time on a shared
machine mostly measures the others). ``python -m benchmarks.journal_cost [--messages N]
[--folder PATH]``."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from digest.delivery.journal import FileJournal
from digest.store.db import utcnow


def measure(folder: Path, messages: int, batch: int = 500) -> tuple[float, float]:
    """Microseconds per message with the journal, and for the same loop without it."""
    journal = FileJournal(folder, "sqlite:///bench.sqlite3", "2026-W49")
    reply = "250 2.0.0 Ok: queued as 4XyZ1a2b3c"

    def loop(write: bool) -> float:
        started = time.process_time()
        for first in range(1, messages + 1, batch):
            ids = list(range(first, min(first + batch, messages + 1)))
            if write:
                journal.claimed(ids)
            for delivery_id in ids:
                now = utcnow()
                row = {"id": delivery_id, "status": "sent", "detail": reply, "sent_at": now}
                row["updated_at"] = now
                if write:
                    journal.on_wire(delivery_id)
                    journal.outcome(delivery_id, row)
        return (time.process_time() - started) / messages * 1e6

    base = min(loop(False) for _ in range(5))
    with_journal = min(loop(True) for _ in range(5))
    journal.close()
    return with_journal, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or Path(temporary)
        with_journal, base = measure(folder, args.messages)
    print(
        f"journal: {with_journal - base:.2f} us of CPU per message "
        f"({with_journal:.2f} with it, {base:.2f} for the same loop without) "
        f"over {args.messages} messages in {folder}"
    )


if __name__ == "__main__":
    main()
