"""Classify one recipient's bounce (email-standards.md §10; RFC 3463 codes). Pure.

===========  =====================================================  ==========================
kind         when                                                   what is done
===========  =====================================================  ==========================
hard         5.1.x address errors (bad mailbox, bad domain, moved)  the reader is suppressed
soft         4.x.x, ``Action: delayed``, other 5.x.x (mailbox full,  counted; suppressed after
             system or routing trouble), no code at all              3 over at least 2 editions
policy       x.7.x (blocklist, reputation, authentication: 5.7.1,    nobody is suppressed; the
             5.7.26, 4.7.0, 4.7.26-32), 5.1.7/5.1.8 (our own          operator is warned and the
             sender address), or words such as "Spamhaus"/"DMARC"    edition is paused
complaint    an ARF feedback report                                 suppressed (complained)
ignored      ``delivered``/``relayed``/``expanded``, 2.x.x           nothing
===========  =====================================================  ==========================
"""

from __future__ import annotations

import re
from typing import Final

HARD: Final = "hard"
SOFT: Final = "soft"
POLICY: Final = "policy"
COMPLAINT: Final = "complaint"
IGNORED: Final = "ignored"

#: Diagnostic words that mean the receiving side refused *us*, not the address.
_POLICY_WORDS = re.compile(
    r"spamhaus|spamcop|barracuda|blocklist|blacklist|block list|black list|\brbl\b|dnsbl|"
    r"reputation|dmarc|\bspf\b|\bdkim\b|unauthenticated|not authenticated|"
    r"rate limit|too many (messages|connections)|ip .*(listed|blocked)|poor reputation",
    re.IGNORECASE,
)
#: Words that mean the address does not exist, for bounces that carry only ``5.0.0``.
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
    r"doesn't exist|mailbox (not found|unavailable)|recipient (address )?rejected: "
    r"(user unknown|undeliverable)|invalid recipient|address rejected|not a valid mailbox|"
    r"recipientnotfound|account (is )?disabled",
    re.IGNORECASE,
)
_SENDER_SIDE_ADDRESS = ("5.1.7", "5.1.8")
_NOT_FAILURES = ("delivered", "relayed", "expanded")


def classify(action: str, status: str, diagnostic: str = "") -> str:
    """``hard``, ``soft``, ``policy`` or ``ignored`` for one per-recipient block."""
    action = action.strip().lower()
    if action in _NOT_FAILURES or status.startswith("2."):
        return IGNORED
    cls, _, rest = status.partition(".")
    subject = rest.partition(".")[0]
    if subject == "7" or status in _SENDER_SIDE_ADDRESS:
        return POLICY
    if cls == "5" and subject == "1":
        return HARD
    if _POLICY_WORDS.search(diagnostic):
        return POLICY
    if cls == "5" and status.endswith(".0.0") and _UNKNOWN_USER.search(diagnostic):
        return HARD
    return SOFT


def describe(kind: str, status: str) -> str:
    """A few words for the report line: ``hard bounce 5.1.1``."""
    code = f" {status}" if status else ""
    names = {
        HARD: "hard bounce",
        SOFT: "soft bounce",
        POLICY: "policy block",
        COMPLAINT: "complaint",
        IGNORED: "not a failure",
    }
    return names.get(kind, kind) + code
