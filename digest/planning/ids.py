"""The process's source of Message-IDs, on the system clock: the pure stages get it injected."""

from __future__ import annotations

import time

from digest.mail.message import MessageIds

#: One per process, so that every Message-ID this process makes sorts after the last one.
MESSAGE_IDS = MessageIds(time.time_ns)


def new_message_id(edition_key: str, domain: str) -> str:
    """One Message-ID from :data:`MESSAGE_IDS`."""
    return MESSAGE_IDS.one(edition_key, domain)
