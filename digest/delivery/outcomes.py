"""What a send attempt means for its ledger row, and the run's tally of them.

Pure: a reply (or its absence) in, the row's new columns out. A 5xx reply fails the row for
good; a 4xx reply or a dropped connection defers it until ``MAX_ATTEMPTS``; only a
server-wide reply (a 421, a rate limit) should slow the whole run.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from digest.delivery.ledger import GAVE_UP, Claim
from digest.mail.transports.base import DeliveryFailed
from digest.store.db import utcnow
from digest.store.models import DeliveryStatus
from subscribers.models import Status

_DEFERRED = DeliveryStatus.DEFERRED.value

_ADDRESS = re.compile(r"<[^<>@\s]*@[^<>\s]*>|[^\s<>@,;:()\"']+@[^\s<>,;:()\"']+")
#: A temporary reply that speaks for the whole server, not one mailbox: slow down.
_SERVER_WIDE = re.compile(r"rate.?limit|too many|too fast|slow down|throttl", re.IGNORECASE)

#: A temporary failure is retried until a delivery has had this many attempts.
MAX_ATTEMPTS = 5


@dataclass
class Tally:
    """What happened to the messages of a run."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    #: messages of this run whose end of data went out without a reply (they may have
    #: reached their reader; re-sent in-flight rows are counted by the resume instead)
    possibly_duplicated: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        """Count ``other``'s messages too (a worker process's, say)."""
        self.sent, self.failed = self.sent + other.sent, self.failed + other.failed
        self.skipped += other.skipped
        self.resent_after_crash += other.resent_after_crash
        self.possibly_duplicated += other.possibly_duplicated
        self.failures.update(other.failures)


def skipped_row(item: Claim) -> dict[str, object] | None:
    """The row of a reader who cannot get the message any more, or None."""
    if item.address is None or item.token is None:
        detail = "subscriber was erased"
    elif item.subscriber_status != Status.ACTIVE:
        detail = f"subscriber is {item.subscriber_status} since planning"
    else:
        return None
    return {
        "id": item.delivery_id,
        "status": DeliveryStatus.SKIPPED.value,
        "detail": detail,
        "updated_at": utcnow(),
    }


def server_wide(failure: DeliveryFailed) -> bool:
    """A reply that asks the whole run to slow down: a 421 (the server closes the
    connection) or one that says it is a rate limit; not a greylisted or full mailbox."""
    return failure.code == 421 or bool(_SERVER_WIDE.search(failure.reply))


def failure_reason(detail: str) -> str:
    """A failure's reply as a reason shared by every recipient it happened to: addresses
    are replaced by ``<address>`` and the text is cut at 60 characters."""
    if detail.startswith(GAVE_UP):
        return "too many temporary failures"
    return _ADDRESS.sub("<address>", detail)[:60]


def failure_row(item: Claim, exc: DeliveryFailed) -> dict[str, object]:
    if exc.permanent:
        return {"status": DeliveryStatus.FAILED.value, "detail": exc.reply}
    if item.attempts >= MAX_ATTEMPTS:
        return {
            "status": DeliveryStatus.FAILED.value,
            "detail": f"{GAVE_UP} {item.attempts} attempts: {exc.reply}",
        }
    return {"status": _DEFERRED, "detail": exc.reply}
