"""Pure rules about a subscriber's status, shared by the service and the import planner:
which of two statuses is stricter, and who may make a subscriber active."""

from __future__ import annotations

import datetime as dt

from subscribers.models import SUPPRESSED, Status

#: Statuses that end mail to an address; none is ever reopened by an admin or an import.
CLOSED = (Status.UNSUBSCRIBED.value, *SUPPRESSED)
_STRICTNESS = {
    None: 0,
    Status.ACTIVE.value: 1,
    Status.PENDING.value: 2,
    Status.UNSUBSCRIBED.value: 3,
    Status.BOUNCED.value: 4,
    Status.COMPLAINED.value: 5,
}


def stricter(a: str | None, b: str | None) -> str | None:
    """The stricter of two statuses (``a`` when they are equal)."""
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


def confirm_refusal(
    status: str, unsubscribed_at: dt.datetime | None, listed: str | None, *, by: str
) -> str | None:
    """Why a subscriber may not be made active ``by`` this means (None: they may).

    ``listed`` is the reason their address is on the suppression list, if it is. Only the
    owner's own confirmation link (``by="link"``) confirms an address that unsubscribed or
    is suppressed: they just received mail there and asked."""
    if by == "link":
        return None
    if status in SUPPRESSED or listed is not None:
        return f"is suppressed ({listed or status})"
    if unsubscribed_at is not None or status == Status.UNSUBSCRIBED:
        return "unsubscribed before"
    return None
