"""Benchmark: import a generated subscriber CSV (target: 100,000 rows in under a minute,
with memory that does not grow with the file).

Each import runs in a fresh process on a fresh database, so its peak RSS is its own. The
baseline, measured in the same run, is reading and checking the same file without a
database; the ratio says what storing costs on top. Two sizes show whether memory grows
with the file. After the pending import, every confirmation email is also built and
recorded (handed to a transport that only counts them).

    python benchmarks/import_subscribers.py                      # SQLite, 10k and 100k rows
    python benchmarks/import_subscribers.py --rows 100000 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CATEGORIES = [
    ("pharmacology", "Pharmacology"),
    ("neurology", "Neurology"),
    ("rehabilitation", "Rehabilitation"),
    ("regenerative-medicine", "Regenerative medicine"),
    ("neuromodulation", "Neuromodulation"),
    ("assistive-technology", "Assistive technology"),
    ("bladder-and-bowel", "Bladder and bowel"),
    ("mental-health", "Mental health"),
]
NAMES = ["Ada Lovelace", "Zoë Müller", "José Martínez", "Łukasz Nowak", "Ngozi Okafor", "李雷", ""]


def generate(path: Path, rows: int, seed: int = 4) -> None:
    """``rows`` data rows: 1 to 3 categories by slug or name, 1% repeated in another case."""
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "name", "categories", "created_at"])
        for n in range(rows):
            address = f"reader{n}@example{n % 97}.org"
            if n and n % 100 == 0:
                address = f"READER{n - 1}@EXAMPLE{(n - 1) % 97}.ORG"
            chosen = rnd.sample(CATEGORIES, rnd.randint(1, 3))
            labels = ";".join(slug if rnd.random() < 0.5 else name for slug, name in chosen)
            writer.writerow([address, rnd.choice(NAMES), labels, "2026-01-15T10:00:00Z"])


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from sqlalchemy import text

    from digest.sources.store import ensure_category
    from digest.store import schema
    from digest.store.db import make_engine, session_factory, transaction, utcnow
    from subscribers.csvio import read_rows
    from subscribers.importing import category_index, import_csv

    path = Path(args.file)
    if args.mode == "parse":
        index = {slug: (n, slug) for n, (slug, _) in enumerate(CATEGORIES, 1)}
        index.update({name.lower(): (n, s) for n, (s, name) in enumerate(CATEGORIES, 1)})
        started = time.perf_counter()
        with path.open(encoding="utf-8-sig", newline="") as stream:
            count = sum(1 for _ in read_rows(stream, index)[1])
        seconds = time.perf_counter() - started
        result = {"rows": count}
    else:
        if args.url:
            schema_name = f"bench_{secrets.token_hex(4)}"
            admin = make_engine(args.url)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema_name}"))
            engine = make_engine(args.url, connect_args={"options": f"-csearch_path={schema_name}"})
        else:
            engine = make_engine(f"sqlite:///{Path(args.workdir) / 'bench.sqlite3'}")
        try:
            schema.upgrade(engine)
            factory = session_factory(engine)
            with transaction(factory) as session:
                for slug, name in CATEGORIES:
                    ensure_category(session, slug, name)
                category_index(session)
            started = time.perf_counter()
            report = import_csv(factory, path, now=utcnow(), confirmed=args.mode == "confirmed")
            seconds = time.perf_counter() - started
            result = {"rows": report.rows, "created": sum(report.created.values())}
            if args.mode == "pending":
                result.update(confirm(args, factory))
            if not report.written or report.invalid:
                raise SystemExit(f"import failed: {report.problems[:3]}")
        finally:
            engine.dispose()
            if args.url:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema_name} CASCADE"))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**result, "seconds": seconds, "peak_mib": peak_kib / 1024}))


class CountingTransport:
    """Takes messages and keeps only their number: measures building, not a mail server."""

    name = "counting"
    concurrency = 1
    count = 0

    def send(self, envelope: object, message: bytes) -> str:
        self.count += 1
        return "250 counted"

    def close(self) -> None:
        return None


def confirm(args: argparse.Namespace, factory: object) -> dict[str, float]:
    """Build and record every pending subscriber's confirmation email (nothing is sent)."""
    from digest.config import STARTER_CONFIG, load_settings
    from digest.notices.confirmation import send_confirmations
    from digest.store.db import utcnow

    config = Path(args.workdir) / "digest.toml"
    config.write_text(STARTER_CONFIG, encoding="utf-8")
    transport = CountingTransport()
    started = time.perf_counter()
    report = send_confirmations(load_settings(config, env={}), factory, transport, now=utcnow())  # type: ignore[arg-type]
    return {"confirmations": report.sent, "confirm_seconds": time.perf_counter() - started}


def measure(file: Path, mode: str, workdir: Path, url: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--file", str(file)]
    command += ["--workdir", str(workdir)] + (["--url", url] if url else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="second size, for memory")
    parser.add_argument("--postgres", metavar="URL", help="also import into this PostgreSQL")
    parser.add_argument("--child", choices=["parse", "pending", "confirmed"], dest="mode")
    parser.add_argument("--file")
    parser.add_argument("--workdir")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    print(f"Python {sys.version.split()[0]}; target: {args.rows:,} rows in under 60 s")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rows in sorted({args.small, args.rows}):
            file = root / f"people-{rows}.csv"
            generate(file, rows)
            size = file.stat().st_size / 1024 / 1024
            print(f"\n{rows:,} rows ({size:.1f} MB CSV)")
            base = measure(file, "parse", root, None)
            print(
                f"  {'read and check only (baseline)':34} {base['seconds']:6.2f} s "
                f"{rows / base['seconds']:9,.0f} rows/s  peak RSS {base['peak_mib']:5.0f} MiB"
            )
            targets = [("SQLite", None)] + (
                [("PostgreSQL", args.postgres)] if args.postgres else []
            )
            for label, url in targets:
                for mode in ("pending", "confirmed"):
                    work = root / f"{label}-{mode}-{rows}"
                    work.mkdir()
                    got = measure(file, mode, work, url)
                    print(
                        f"  {label + ', ' + mode:34} {got['seconds']:6.2f} s "
                        f"{rows / got['seconds']:9,.0f} rows/s  peak RSS {got['peak_mib']:5.0f} MiB"
                        f"  x{got['seconds'] / base['seconds']:.1f} baseline"
                    )
                    if "confirmations" in got:
                        sent, took = got["confirmations"], got["confirm_seconds"]
                        print(
                            f"  {'  then build its confirmations':34} {took:6.2f} s "
                            f"{sent / took:9,.0f} msg/s   ({sent:,.0f} emails, not sent)"
                        )


if __name__ == "__main__":
    main()
