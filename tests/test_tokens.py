"""Subscriber tokens: unguessable, of one shape, and never read by a spam filter as a
bitcoin address (a digest holding one and the words "within 24 hours", as a summary may,
scored BITCOIN_DEADLINE)."""

from __future__ import annotations

import re

from subscribers.tokens import TOKEN_LENGTH, looks_like_token, new_token

#: SpamAssassin 4's ``__BITCOIN_ID`` body rule, as in its 72_active.cf.
BITCOIN_ID = re.compile(
    r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
    r"|bc1[acdefghjklmnpqrstuvwxyz234567890]{30,90}"
    r"|b[-_=\s]c[-_=\s]1(?:[-_=\s][acdefghjklmnpqrstuvwxyz234567890]){30,90})\b"
)
#: One token in about 4,000 made with ``secrets.token_urlsafe(32)`` matched: among this
#: many, none doing so by chance is about e^-12.
MANY = 50_000


def test_no_token_in_an_unsubscribe_link_looks_like_a_bitcoin_address() -> None:
    tokens = [new_token() for _ in range(MANY)]
    assert len(set(tokens)) == MANY
    assert all(len(token) == TOKEN_LENGTH and looks_like_token(token) for token in tokens)
    found = [
        token
        for token in tokens
        for link in (f"https://example.org/u/{token}\n", f"Unsubscribe: {token}.\n")
        if BITCOIN_ID.search(link)
    ]
    assert found == []


def test_the_pattern_finds_what_a_token_with_a_dash_could_hold() -> None:
    # the rule as copied does find such a word in a link, so the test above can fail
    word = "1" + "A" * 30
    assert BITCOIN_ID.search(f"https://example.org/u/abcdefghijk-{word}\n")
    assert not BITCOIN_ID.search(f"https://example.org/u/abcdefghijk_{word}\n")
