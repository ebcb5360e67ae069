"""How long a link's token check takes for known, unknown, near-miss and malformed tokens.

Run: ``.venv/bin/python -m benchmarks.token_timing [--subscribers 20000] [--count 2000]
[--postgres URL]``

Fills a fresh database (a temporary SQLite file, or a new schema of the PostgreSQL
database at ``--postgres``) with subscribers, then times
:func:`subscribers.lookup.find_by_token` (what every ``/u/`` and ``/p/`` request runs) on
one session, interleaving the kinds in a shuffled order so drift hits them alike. Prints
the median microseconds per kind and its ratio to the known-token baseline measured in the
same run. The look-up is by HMAC(token_key, token), so a guess sharing 42 of 43 characters
with a real token ("near miss") walks the index like any other, and a malformed token takes
the same steps: every kind that fails should differ from the others by no more than noise.
A known token costs more because its subscriber (and topics) are then loaded to build the
page; that answer differs anyway (200, not 404). There is no timing target; this shows the
property, a test does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction
from subscribers.instance import token_key
from subscribers.lookup import find_by_token
from subscribers.models import Subscriber
from subscribers.tokens import new_token, token_digest

JOINED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fill(engine: Engine, count: int) -> list[str]:
    """``count`` active subscribers; their tokens."""
    schema.upgrade(engine)
    tokens = [new_token() for _ in range(count)]
    with transaction(session_factory(engine)) as session:
        key = token_key(session)
        rows = [
            {
                "email": f"reader{i}@example.org",
                "email_key": f"reader{i}@example.org",
                "email_hash": secrets.token_hex(32),
                "status": "active",
                "token": token,
                "token_hash": token_digest(key, token),
                "created_at": JOINED,
                "frequency": "weekly",
            }
            for i, token in enumerate(tokens)
        ]
        for start in range(0, len(rows), 5000):
            session.execute(insert(Subscriber), rows[start : start + 5000])
    return tokens


def kinds(tokens: list[str]) -> dict[str, Callable[[int], str]]:
    """Each kind of token a request may carry, as a function of the sample number."""

    def near_miss(i: int) -> str:
        token = tokens[i % len(tokens)]
        return token[:-1] + ("A" if token[-1] != "A" else "B")

    return {
        "known": lambda i: tokens[i % len(tokens)],
        "unknown": lambda i: new_token(),
        "near miss (42 of 43 right)": near_miss,
        "malformed (short)": lambda i: tokens[i % len(tokens)][:20],
        "malformed (500 chars)": lambda i: "x" * 500,
    }


def measure(session: Session, tokens: list[str], count: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in kinds(tokens)}
    makers = list(kinds(tokens).items())
    order = random.Random(7)
    for i in range(count):
        order.shuffle(makers)  # no kind always runs right after another
        for name, make in makers:
            token = make(i)
            start = time.perf_counter()
            find_by_token(session, token)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--count", type=int, default=2_000, help="look-ups per kind")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a new schema is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.postgres:
            name = f"bench_{secrets.token_hex(4)}"
            admin = make_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {name}"))
            sep = "&" if "?" in args.postgres else "?"
            engine = make_engine(f"{args.postgres}{sep}options=-csearch_path%3D{name}")
        else:
            engine = make_engine(f"sqlite:///{Path(folder) / 'tokens.sqlite3'}")
        try:
            tokens = fill(engine, args.subscribers)
            with session_factory(engine)() as session:
                measure(session, tokens, 200)  # warm the caches
                medians = measure(session, tokens, args.count)
        finally:
            engine.dispose()
            if args.postgres:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
                admin.dispose()
    base = medians["known"]
    print(f"find_by_token on {engine.dialect.name}, {args.subscribers:,} subscribers, "
          f"{args.count:,} look-ups per kind (median)")  # fmt: skip
    for name, value in medians.items():
        print(f"  {name:28} {value:8.1f} us   x{value / base:.2f} of known")


if __name__ == "__main__":
    main()
