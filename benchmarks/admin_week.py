"""How long the admin console's "This week" page and a variant's preview take to answer
with N subscribers (the page makes the dry-run plan ``digest send --dry-run`` makes, which
reads every reader, and renders every variant once to check it).

Builds the send benchmark's database (benchmarks/edition_data.py: 40 summaries, readers in
up to 255 category sets) and asks the console's WSGI app for each page a few times, with a
test client (no network). Prints wall-clock seconds per request, cold and warm; nothing is
asserted.

    .venv/bin/python -m benchmarks.admin_week --subscribers 10000
    .venv/bin/python -m benchmarks.admin_week --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import tempfile
import time

from sqlalchemy import text

from benchmarks.edition_data import NOW, generate
from benchmarks.send_edition import bench_settings
from digest.store.db import make_engine
from digest.web.admin import create_admin_app


def timed(client, path: str, times: int) -> list[float]:  # type: ignore[no-untyped-def]
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        answer = client.get(path)
        spent.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--times", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (own schema)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url, schema = f"sqlite:///{workdir}/bench.sqlite3", None
        if args.postgres:
            schema = f"b_{secrets.token_hex(4)}"
            with make_engine(args.postgres).begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
        try:
            made = generate(url, args.subscribers)
            print(
                f"{made.subscribers} subscribers in {made.category_sets} category sets "
                f"({made.seconds:.1f} s to generate)"
            )
            app = create_admin_app(bench_settings(workdir, url), now=lambda: NOW)
            client = app.test_client()
            week = timed(client, "/admin/", args.times)
            page = client.get("/admin/").get_data(as_text=True)
            variants = re.findall(r'href="/admin/view\?variant=([0-9a-f]+)"', page)
            print(
                f"This week: {len(variants)} variants; GET /admin/ cold {week[0]:.2f} s, "
                f"warm median {statistics.median(week[1:] or week):.2f} s"
            )
            view = timed(client, f"/admin/view?variant={variants[0]}", args.times)
            print(
                f"GET /admin/view (variant 1, plan reused): cold {view[0]:.2f} s, "
                f"warm median {statistics.median(view[1:] or view):.2f} s"
            )
        finally:
            if schema:
                with make_engine(args.postgres).begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
