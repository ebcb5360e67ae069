"""Benchmark a whole edition: plan, render, build and send to N subscribers (issue 7).

One run builds a database of N subscribers (see benchmarks/edition_data.py) and measures,
each phase in a fresh child process so that its peak RSS is its own:

1. ``run_edition`` into a transport that discards the bytes: the CPU time of everything
   before SMTP (plan, render and build every variant, personalise, ledger rows);
2. ``run_edition`` through the real SMTP transport into benchmarks/fastsink.py (its own
   process), end to end; the sink's counts must equal the ledger's (each message exactly once);
3. baselines of the same run: the naive path (a full render per subscriber, on a sample,
   extrapolated to N) and a raw pipelined socket client pushing personalised messages of a
   sample into the same sink (the ceiling for the sender);
4. the discarding run again on a database of N/10, to see whether peak RSS grows with N;
5. on PostgreSQL, the same edition sent by 2 and 4 processes (``--workers``) and by two
   separate ``digest send --worker`` processes (benchmarks/workers.py).

On PostgreSQL the server's CPU counts too: the CPU of the database's backends is read from
``/proc`` (benchmarks/pgcpu.py) and printed beside the client's, with their total. Each CPU
figure is also given in naive-render times (the figure divided by the naive baseline's CPU
for one reader), so machines of different speeds compare.

Run it from the repository root (100,000 subscribers on SQLite take a few minutes on 2 cores)::

    .venv/bin/python -m benchmarks.send_edition
    .venv/bin/python -m benchmarks.send_edition --subscribers 1000000
    .venv/bin/python -m benchmarks.send_edition \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python -m benchmarks.send_edition --skip-naive --profile send.prof
    .venv/bin/python -m benchmarks.send_edition --postgres URL --workers 1,2,4

PostgreSQL gets a fresh schema, dropped at the end; SQLite a temporary file.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import resource
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from benchmarks import report
from benchmarks.edition_data import NOW, generate
from benchmarks.fastsink import SinkProcess, SinkReport, parallel_push
from benchmarks.pgcpu import ServerCpu
from benchmarks.report import Filled, Naive, Raw, Results, Run
from benchmarks.workers import (
    WorkerRun,
    children_cpu,
    phase_cli_workers,
    sent_rows,
    smtp_settings,
)
from digest.config import STARTER_CONFIG, Settings, load_settings, parse_smtp_url
from digest.edition.run import run_edition
from digest.edition.variants import render_variants
from digest.mail.message import MessageTemplate, Recipient
from digest.mail.transports import MemoryTransport, SmtpTransport
from digest.mail.transports.base import Delivered, Envelope, Job, OnWire
from digest.planning.selection import VariantKey
from digest.render.renderer import Renderer
from digest.store.db import make_engine, session_factory, transaction
from digest.store.models import Delivery, Edition, Variant
from subscribers.models import Subscriber

T = TypeVar("T")


# ---------------------------------------------------------------- plumbing


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU of this process and of its children that have ended: the render helpers of
    ``run_edition`` (stopped before the first message) and its worker processes."""
    return time.process_time() + children_cpu()


def in_child(function: Callable[..., T], *args: Any) -> T:
    """Run ``function`` in a freshly spawned process (its peak RSS is its own)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def bench_settings(workdir: str, url: str) -> Settings:
    """The starter configuration, on the benchmark's database."""
    config = Path(workdir) / "digest.toml"
    config.write_text(STARTER_CONFIG, encoding="utf-8")
    return load_settings(config, env={"DIGEST_DATABASE_URL": url})


@contextmanager
def database(postgres: str | None, workdir: str, name: str) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL schema (dropped
    on exit; the URL selects it with ``options=-csearch_path=...``)."""
    if postgres is None:
        yield f"sqlite:///{Path(workdir) / f'{name}.sqlite3'}"
        return
    schema = f"bench_{name}_{secrets.token_hex(4)}"
    admin = make_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in postgres else "?"
    try:
        yield f"{postgres}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def forget_edition(url: str, key: str) -> None:
    """Delete the edition ``key`` with its variants and ledger rows, so it can be sent again."""
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        edition_id = session.scalar(select(Edition.id).where(Edition.key == key))
        session.execute(delete(Delivery).where(Delivery.edition_id == edition_id))
        session.execute(delete(Variant).where(Variant.edition_id == edition_id))
        session.execute(delete(Edition).where(Edition.id == edition_id))
    engine.dispose()


@dataclass
class DiscardTransport(MemoryTransport):
    """Hands nothing on; keeps only the number and sizes of the messages."""

    messages: int = 0
    total_bytes: int = 0
    smallest: int = 0
    largest: int = 0

    def send(self, envelope: Envelope, message: bytes) -> str:
        return self._count(len(message))

    def deliver(self, jobs: Iterable[Job | None], on_wire: OnWire) -> Iterator[Delivered]:
        """Each message as it comes, in the pieces the sender made: like SMTP's
        ``sendmsg``, nothing joins them."""
        for job in jobs:
            if job is not None:
                on_wire(job.key)
                yield job, self._count(sum(map(len, job.message)))

    def _count(self, size: int) -> str:
        self.messages += 1
        self.total_bytes += size
        self.smallest = min(self.smallest, size) if self.smallest else size
        self.largest = max(self.largest, size)
        return "250 discarded"


@dataclass
class FirstBatch:
    """A ``run_edition`` progress callback noting when the first batch was handed over:
    everything before it is planning, rendering and building."""

    cpu: float = 0.0
    wall: float = 0.0
    done: int = 0

    def __call__(self, done: int, total: int, failed: int) -> None:
        if not self.done:
            self.cpu, self.wall, self.done = cpu_seconds(), time.perf_counter(), done


# ---------------------------------------------------------------- phases (each in a child)


def timed_run(
    settings: Settings, url: str, transport: Any, profile: str | None = None, workers: int = 1
) -> Run:
    first = FirstBatch()
    profiler = cProfile.Profile() if profile else None
    cpu, wall = cpu_seconds(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    edition = run_edition(
        settings, transport, now=NOW, engine=make_engine(url), progress=first, workers=workers
    )
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return Run(
        report=edition,
        cpu=cpu_seconds() - cpu,
        wall=time.perf_counter() - wall,
        cpu_to_first_batch=first.cpu - cpu,
        wall_to_first_batch=first.wall - wall,
        first_batch=first.done,
        rss_mb=peak_rss_mb(),
    )


def phase_generate(url: str, subscribers: int) -> Filled:
    return Filled(generate(url, subscribers), peak_rss_mb())


def phase_discard(workdir: str, url: str, profile: str | None = None) -> Run:
    transport = DiscardTransport()
    run = timed_run(bench_settings(workdir, url), url, transport, profile)
    sizes = (transport.messages, transport.total_bytes, transport.smallest, transport.largest)
    return replace(run, sizes=sizes)


def phase_smtp(workdir: str, url: str, port: int, connections: int, workers: int = 1) -> Run:
    """run_edition into the sink; with ``workers`` > 1 its helper processes send too (their
    CPU, as children of this process, is in the run's)."""
    smtp = parse_smtp_url(f"smtp://127.0.0.1:{port}")
    transport = SmtpTransport(smtp, connections=connections)
    settings = smtp_settings(workdir, url, port, connections)
    try:
        run = timed_run(settings, url, transport, workers=workers)
    finally:
        transport.close()
    return run


def sample_readers(session: Session, key: str, count: int) -> list[tuple[VariantKey, Recipient]]:
    """``count`` readers of edition ``key`` spread evenly over it, with their digest."""
    edition_id = session.scalar(select(Edition.id).where(Edition.key == key))
    ids = list(session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id)))
    chosen = sorted(ids)[:: max(1, len(ids) // max(1, count))][:count]
    rows = session.execute(
        select(
            Variant.category_ids,
            Variant.summary_ids,
            Variant.notice_ids,
            Subscriber.email,
            Subscriber.name,
            Subscriber.token,
            Delivery.message_id,
        )
        .join(Variant, Variant.id == Delivery.variant_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(chosen))
        .order_by(Delivery.id)
    ).all()
    return [
        ((tuple(c), tuple(s), tuple(notices or ())), Recipient(e, n, t, m))
        for c, s, notices, e, n, t, m in rows
    ]


def phase_naive(workdir: str, url: str, key: str, sample: int) -> Naive:
    """Render and build a whole digest for each reader of a sample, as if nothing were shared."""
    settings = bench_settings(workdir, url)
    with session_factory(make_engine(url))() as session:
        readers = sample_readers(session, key, sample)
        renderer = Renderer(settings)
        render_variants(session, renderer, settings, [readers[0][0]], date=NOW, edition=key)
        started = time.process_time()
        for variant, recipient in readers:
            built = render_variants(session, renderer, settings, [variant], date=NOW, edition=key)
            built[variant][1].personalize(recipient)
        return Naive(len(readers), time.process_time() - started)


def phase_raw(
    workdir: str, url: str, key: str, sample: int, ports: tuple[int, int], connections: int
) -> tuple[Raw, Raw]:
    """Personalise the messages of a sample (untimed), then push them with a raw pipelined
    client into the sink at ``ports[0]`` on one connection (issue 17's ceiling), and into
    the sink at ``ports[1]`` on ``connections`` at once, as many as the sender uses (the
    most a sender in Python can hand to this sink)."""
    settings = bench_settings(workdir, url)
    with session_factory(make_engine(url))() as session:
        readers = sample_readers(session, key, sample)
        variants = {variant for variant, _ in readers}
        built = render_variants(
            session, Renderer(settings), settings, variants, date=NOW, edition=key
        )
    templates: dict[VariantKey, MessageTemplate] = {k: t for k, (_, t) in built.items()}
    messages = [(r.address, templates[v].personalize(r)) for v, r in readers]
    size = sum(len(m) for _, m in messages)
    one = parallel_push("127.0.0.1", ports[0], settings.sender_address, messages, 1)
    wide = parallel_push("127.0.0.1", ports[1], settings.sender_address, messages, connections)
    return Raw(len(messages), size, one), Raw(len(messages), size, wide, connections)


# ---------------------------------------------------------------- the benchmark


def step(label: str) -> None:
    print(f"  .. {label}", flush=True)


def measure(args: argparse.Namespace, workdir: str, started: float) -> Results:
    server = args.postgres  # None on SQLite: no server CPU to read
    with database(args.postgres, workdir, "main") as url:
        step(f"filling the database with {args.subscribers:,} subscribers")
        filled = in_child(phase_generate, url, args.subscribers)
        step("run_edition into a discarding transport (CPU before SMTP)")
        with ServerCpu(server and url) as discard_server:
            discard = in_child(phase_discard, workdir, url)
        key = discard.report.key
        step(  # as it comes: a long run stopped later still leaves its main figure
            f"   CPU before SMTP: client {discard.cpu:.1f} s, server {discard_server.seconds:.1f}"
            f" s (autovacuum {discard_server.autovacuum:.1f} s; "
            f"{discard.cpu_to_first_batch:.1f} s client until the first batch); "
            f"peak RSS {discard.rss_mb:.0f} MB"
        )
        naive = None
        if not args.skip_naive:
            step(f"naive baseline: a full render for each of {args.sample} readers")
            naive = in_child(phase_naive, workdir, url, key, args.sample)
        step(
            f"raw pipelined client: {args.raw_sample:,} personalised messages into the sink, "
            f"on one connection and on {args.connections}"
        )
        with SinkProcess() as sink, SinkProcess() as wide_sink:
            raw, raw_wide = in_child(
                phase_raw,
                workdir,
                url,
                key,
                args.raw_sample,
                (sink.port, wide_sink.port),
                args.connections,
            )
            raw_sink, raw_wide_sink = sink.stop(), wide_sink.stop()
        forget_edition(url, key)
        step(f"run_edition through SMTP ({args.connections} connections) into the sink")
        progress = sent_rows(key) if server else None
        with SinkProcess() as sink, ServerCpu(server and url, progress=progress) as smtp_server:
            smtp = in_child(phase_smtp, workdir, url, sink.port, args.connections)
            smtp_sink = sink.stop()
        step(
            f"   {smtp.rate:,.0f} msg/s end to end, {smtp.send_rate:,.0f} while sending "
            f"(raw client {raw.rate:,.0f}, on {raw_wide.connections} connections "
            f"{raw_wide.rate:,.0f}); peak RSS {smtp.rss_mb:.0f} MB"
        )
        workers = measure_workers(args, workdir, url, key, smtp, smtp_server, smtp_sink)
        if args.profile:
            step(f"profiling run_edition into a discarding transport -> {args.profile}")
            forget_edition(url, key)
            in_child(phase_discard, workdir, url, args.profile)
    few = max(1000, args.subscribers // 10)
    with database(args.postgres, workdir, "small") as url:
        step(f"the discarding run again at {few:,} subscribers (flat in N?)")
        in_child(phase_generate, url, few)
        with ServerCpu(server and url) as small_server:
            small = in_child(phase_discard, workdir, url)
    return Results(
        subscribers=args.subscribers,
        database="PostgreSQL (fresh schema)" if args.postgres else "SQLite (temporary file)",
        connections=args.connections,
        filled=filled,
        discard=discard,
        smtp=smtp,
        sink=smtp_sink,
        raw=raw,
        raw_sink=raw_sink,
        raw_wide=raw_wide,
        raw_wide_sink=raw_wide_sink,
        small=small,
        small_subscribers=few,
        naive=naive,
        seconds=time.perf_counter() - started,
        server=discard_server.seconds if server else None,
        server_autovacuum=discard_server.autovacuum,
        small_server=small_server.seconds,
        smtp_server=smtp_server.seconds,
        workers=workers,
    )


def measure_workers(
    args: argparse.Namespace,
    workdir: str,
    url: str,
    key: str,
    one: Run,
    one_server: ServerCpu,
    one_sink: SinkReport,
) -> list[WorkerRun]:
    """On PostgreSQL: the SMTP run above as one process, then ``--workers N`` for each other
    N asked for, then two ``digest send --worker`` processes (as on two machines)."""
    counts = sorted(set(args.workers))
    if args.postgres is None or counts == [1]:
        return []
    runs = [worker_run("--workers 1", 1, one).with_sink(one_server, one_sink)]
    for workers in counts:
        if workers == 1:
            continue
        forget_edition(url, key)
        step(f"run_edition with --workers {workers} into the sink")
        with SinkProcess() as sink, ServerCpu(url, progress=sent_rows(key)) as server:
            run = in_child(phase_smtp, workdir, url, sink.port, args.connections, workers)
            report = sink.stop()
        label = f"--workers {workers}"
        runs.append(worker_run(label, workers, run).with_sink(server, report))
    forget_edition(url, key)
    step("two `digest send --worker` processes at once into the sink")
    with SinkProcess() as sink, ServerCpu(url, progress=sent_rows(key)) as server:
        cli = in_child(phase_cli_workers, workdir, url, sink.port, args.connections, 2)
        report = sink.stop()
    runs.append(cli.with_sink(server, report))
    forget_edition(url, key)
    return runs


def worker_run(label: str, processes: int, run: Run) -> WorkerRun:
    return WorkerRun(
        label,
        processes,
        run.report.sent,
        run.wall,
        run.wall - run.wall_to_first_batch,
        run.cpu,
        counted=run.report.sent - run.first_batch,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark planning, rendering and sending one edition (issue 7)."
    )
    parser.add_argument("--subscribers", type=int, default=100_000, metavar="N")
    parser.add_argument("--postgres", metavar="URL", help="run on a fresh schema of this database")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--sample", type=int, default=300, help="readers rendered one by one (naive baseline)"
    )
    parser.add_argument(
        "--raw-sample", type=int, default=5000, help="messages pushed by the raw client"
    )
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections")
    parser.add_argument("--profile", metavar="FILE", help="also profile the discarding run")
    parser.add_argument(
        "--workers",
        type=lambda value: [int(n) for n in value.split(",")],
        default=[1, 2, 4],
        metavar="LIST",
        help="PostgreSQL: sending processes to compare (default 1,2,4; 1 skips the phase)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"send_edition benchmark: {args.subscribers:,} subscribers", flush=True)
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as workdir:
        results = measure(args, workdir, started)
    ok = report.print_results(results)
    if args.profile:
        report.print_profile(args.profile)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
