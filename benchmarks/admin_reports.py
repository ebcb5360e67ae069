"""How long the admin console's list and health reports take on a large list.

    python -m benchmarks.admin_reports [--subscribers N] [--postgres URL]

Fills a database with the send benchmark's generated data (benchmarks.edition_data:
N active subscribers with 1-8 topics, last week's edition sent to 95 % of them), then
times each report the pages call, as a page would (a new session each), and prints the
process's peak RSS. Nothing is asserted: these are figures for the README.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from benchmarks.edition_data import NOW, generate
from digest.reports import health, people
from digest.store.db import make_engine, session_factory


def timed(name: str, factory: Callable[[], Session], report: Callable[[Session], object]) -> None:
    started = time.perf_counter()
    with factory() as session:
        report(session)
    print(f"  {name:<34} {(time.perf_counter() - started) * 1000:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (default SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.postgres or f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        made = generate(url, args.subscribers)
        print(f"{made.subscribers} subscribers, {made.subscriptions} subscriptions "
              f"({made.seconds:.0f} s to generate) on {url.partition(':')[0]}")  # fmt: skip
        engine = make_engine(url)
        factory = session_factory(engine)
        exact = people.parse_query("reader.5000@example.org")
        prefix = people.parse_query("reader.500")
        timed("the list's counts", factory, lambda s: (
            people.status_counts(s), people.topic_counts(s), people.suppression_counts(s),
            people.recent_imports(s),
        ))  # fmt: skip
        timed("search, whole address", factory, lambda s: people.find(s, exact))
        timed("search, prefix of 10", factory, lambda s: people.find(s, prefix))
        timed("readers per topic, 26 weeks", factory, lambda s: health.topic_weeks(s, now=NOW))
        timed("edition outcomes", factory, health.edition_outcomes)
        timed("send speeds", factory, health.edition_speeds)
        engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
