"""What is random in a digest's links, the reader's token and the variant's web id: each
unguessable, of one shape, and never read by a spam filter as a bitcoin or litecoin address
(a digest holding one and the words "within 24 hours", as a summary may, scored
BITCOIN_DEADLINE)."""

from __future__ import annotations

import random
import re

from digest.planning.webid import web_id_for
from subscribers.tokens import TOKEN_LENGTH, looks_like_token, new_token

#: SpamAssassin 4's ``__BITCOIN_ID`` body rule, as in its 72_active.cf.
BITCOIN_ID = re.compile(
    r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
    r"|bc1[acdefghjklmnpqrstuvwxyz234567890]{30,90}"
    r"|b[-_=\s]c[-_=\s]1(?:[-_=\s][acdefghjklmnpqrstuvwxyz234567890]){30,90})\b"
)
#: SpamAssassin 4's ``__LITECOIN_ID``.
LITECOIN_ID = re.compile(r"\b(?<!=)[LM3][a-km-zA-HJ-NP-Z1-9]{26,33}\b")
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
        if BITCOIN_ID.search(link) or LITECOIN_ID.search(link)
    ]
    assert found == []


def test_no_web_id_in_a_view_in_browser_link_looks_like_a_coin_address() -> None:
    # about one base64url web id in 600 did: among this many, none by chance is e^-33
    rng = random.Random(17)
    keys = [((rng.randrange(10**6),), (rng.randrange(10**6),), ()) for _ in range(MANY // 2)]
    ids = [web_id_for(rng.randbytes(32), "2026-W50", key) for key in keys]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z2-7]{39}", web_id) for web_id in ids)
    found = [
        web_id
        for web_id in ids
        if BITCOIN_ID.search(f"https://example.org/v/{web_id}\n")
        or LITECOIN_ID.search(f"https://example.org/v/{web_id}\n")
    ]
    assert found == []


def test_the_same_week_and_topics_keep_their_web_id() -> None:
    # a preview and the send agree on the address of the web version
    key = ((1, 4), (7, 9), ())
    assert web_id_for(b"salt" * 8, "2026-W50", key) == web_id_for(b"salt" * 8, "2026-W50", key)
    assert web_id_for(b"salt" * 8, "2026-W50", key) != web_id_for(b"salt" * 8, "2026-W51", key)


def test_the_pattern_finds_what_a_token_with_a_dash_could_hold() -> None:
    # the rule as copied does find such a word in a link, so the test above can fail
    word = "1" + "A" * 30
    assert BITCOIN_ID.search(f"https://example.org/u/abcdefghijk-{word}\n")
    assert not BITCOIN_ID.search(f"https://example.org/u/abcdefghijk_{word}\n")
