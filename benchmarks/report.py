"""Figures of the send benchmark (benchmarks/send_edition.py), with targets and verdicts."""

from __future__ import annotations

import pstats
from dataclasses import dataclass, field

from benchmarks.edition_data import Generated
from benchmarks.fastsink import SinkReport
from benchmarks.workers import WorkerRun, print_workers
from digest.edition.run import EditionReport

MILLION = 1_000_000
#: Targets of issue 17: CPU before SMTP at 1,000,000 readers, the server's included.
CPU_TARGET = {"SQLite": 30.0, "PostgreSQL": 40.0}
#: Shares of the raw pipelined client's rate into the same sink (issue 17).
WHILE_SENDING_TARGET = 0.90
END_TO_END_TARGET = 0.75
RSS_TARGET = 200.0  # MB at 1,000,000 subscribers
FLAT = 0.10  # peak RSS at N may exceed the peak at N/10 by this share
CORES = 2
#: Bytes of a message: cards carry whole explanations, caveats and sources since the
#: content work (issue 16), about a quarter more than before (72 KB on average then).
SIZE_RANGE = (40_000, 120_000)
#: (file suffix, function) of the library's stages, for --profile.
STAGES = (
    ("digest/edition/run.py", "run_edition", "run_edition (all)"),
    ("digest/planning/plan.py", "plan_edition", "1 plan: select items, queue ledger rows"),
    ("digest/edition/passes.py", "render_pending", "2 read contents, render, build"),
    ("digest/edition/build.py", "build_variant", "   build templates"),
    ("digest/mail/message.py", "qp_encode", "   quoted-printable encoding"),
    ("digest/mail/message.py", "check_template", "   check_template (check a sample as built)"),
    ("digest/edition/passes.py", "check_pending", "3 preflight"),
    ("digest/edition/passes.py", "send_passes", "4-5 claim, personalise, send, record"),
    ("digest/delivery/ledger.py", "claim", "   ledger.claim"),
    ("digest/delivery/ledger.py", "record", "   ledger.record"),
    ("digest/delivery/sender.py", "_jobs", "   Sender._jobs (personalise each message)"),
    ("digest/mail/message.py", "pieces", "   MessageTemplate.pieces"),
    ("digest/mail/headers.py", "to_header", "   to_header"),
    ("digest/mail/headers.py", "header_line", "   header_line (RFC 2047 display names)"),
)


@dataclass(frozen=True)
class Run:
    """One ``run_edition``: its report and what it cost."""

    report: EditionReport
    cpu: float
    wall: float
    cpu_to_first_batch: float
    wall_to_first_batch: float
    first_batch: int
    rss_mb: float
    sizes: tuple[int, int, int, int] = (0, 0, 0, 0)  # messages, bytes, smallest, largest

    @property
    def rate(self) -> float:
        return self.report.sent / self.wall if self.wall else 0.0

    @property
    def send_rate(self) -> float:
        """Messages/s once the first batch is out (planning and rendering done)."""
        seconds = self.wall - self.wall_to_first_batch
        return (self.report.sent - self.first_batch) / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class Filled:
    generated: Generated
    rss_mb: float


@dataclass(frozen=True)
class Naive:
    readers: int
    cpu: float


@dataclass(frozen=True)
class Raw:
    messages: int
    bytes: int
    seconds: float
    connections: int = 1

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Results:
    subscribers: int
    database: str
    connections: int
    filled: Filled
    discard: Run
    smtp: Run
    sink: SinkReport
    raw: Raw  # one connection: issue 17's ceiling
    raw_sink: SinkReport
    raw_wide: Raw  # as many connections as the sender uses
    raw_wide_sink: SinkReport
    small: Run  # the discarding run at small_subscribers
    small_subscribers: int
    naive: Naive | None
    seconds: float
    #: CPU seconds of the PostgreSQL backends during the discarding runs and the SMTP run
    #: (None on SQLite, where the database works inside the client's process)
    server: float | None = None
    server_autovacuum: float = 0.0  # of ``server``: autovacuum workers
    small_server: float = 0.0
    smtp_server: float = 0.0
    workers: list[WorkerRun] = field(default_factory=list)

    @property
    def engine(self) -> str:
        return "SQLite" if self.server is None else "PostgreSQL"

    def per_naive(self, cpu: float) -> str:
        """``cpu`` in naive-render times: how many readers' digests the naive path (a whole
        render per reader) renders with that CPU on this machine. The machine's speed
        cancels out, so runs on different machines compare (lower is better)."""
        if self.naive is None:
            return "n/a"
        return f"{cpu / (self.naive.cpu / self.naive.readers):,.0f}"


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


def at_million(n_small: int, small: float, n: int, large: float) -> float:
    """A figure at 1,000,000 from two measured points (a straight line through them)."""
    if n >= MILLION or n == n_small:
        return large * (MILLION / n if n < MILLION else 1.0)
    slope = (large - small) / (n - n_small)
    return large + slope * (MILLION - n)


def _kb(size: float) -> str:
    return f"{size / 1000:.1f} KB"


def print_results(r: Results) -> bool:
    """Print every figure with its target; returns whether all targets and checks pass."""
    n, g = r.subscribers, r.filled.generated
    print(f"\n== send_edition: {n:,} subscribers, {r.database}, {r.seconds:.0f} s in all ==")
    print(
        f"data: {g.subscribers:,} subscribers, {g.subscriptions:,} subscriptions, "
        f"{g.category_sets} distinct category sets, {g.returning:,} sent last week; "
        f"filled in {g.seconds:.1f} s (peak RSS {r.filled.rss_mb:.0f} MB)"
    )
    checks = [
        _print_messages(r.discard),
        _print_cpu(r),
        _print_smtp(r),
        _print_rss(r),
    ]
    _print_baselines(r)
    print_workers(r.workers, CORES)
    print_summary(r)
    return all(checks)


def print_summary(r: Results) -> None:
    """One column of the README's Performance table: this run's figures, to paste."""
    n, run = r.subscribers, r.discard
    label = f"{r.engine} {n // 1000:,}k" if n < MILLION else f"{r.engine} {n // MILLION}M"
    naive = f"{r.naive.cpu / r.naive.readers * 1000:.1f} ms" if r.naive else "n/a"
    server = r.server or 0.0
    total = run.cpu + server
    cpu = f"{total:.1f} s = {r.per_naive(total)} naive renders"
    if r.server is not None:
        cpu += f" (client {run.cpu:.1f} + server {server:.1f})"
    rows = [
        ("CPU before SMTP, client + server", cpu),
        ("of which until the first batch (client)", f"{run.cpu_to_first_batch:.1f} s"),
        (
            "end to end into fastsink / share of raw",
            f"{r.smtp.rate:,.0f} msg/s / {r.smtp.rate / r.raw.rate:.0%}",
        ),
        (
            "while sending / share of raw",
            f"{r.smtp.send_rate:,.0f} msg/s / {r.smtp.send_rate / r.raw.rate:.0%}",
        ),
        ("raw pipelined client (ceiling)", f"{r.raw.rate:,.0f} msg/s"),
        (
            f"raw client on {r.raw_wide.connections} connections / sender's share while sending",
            f"{r.raw_wide.rate:,.0f} msg/s / {r.smtp.send_rate / r.raw_wide.rate:.0%}",
        ),
        ("naive baseline (machine speed)", naive),
        (
            f"peak RSS at {r.small_subscribers // 1000:,}k / at N (SMTP run)",
            f"{r.small.rss_mb:.0f} / {run.rss_mb:.0f} MB ({r.smtp.rss_mb:.0f} MB)",
        ),
    ]
    one = r.workers[0].steady if r.workers else 0.0
    rows += [
        (f"steady rate, {w.label}", f"{w.steady:,.0f} msg/s (x{w.steady / one:.2f})")
        for w in r.workers
        if one
    ]
    print(f"\nsummary (a column of the README's Performance table)\n| figure | {label} |")
    print("|---|---|")
    for figure, value in rows:
        print(f"| {figure} | {value} |")


def _print_messages(run: Run) -> bool:
    count, total, smallest, largest = run.sizes
    low, high = SIZE_RANGE
    ok = count > 0 and low <= smallest and largest <= high
    print(
        f"messages: {run.report.queued:,} queued, {len(run.report.variants)} variants; "
        f"size {_kb(total / max(count, 1))} on average, {_kb(smallest)}-{_kb(largest)} "
        f"[all within {_kb(low)}-{_kb(high)}: {verdict(ok)}]"
    )
    return ok


def _print_cpu(r: Results) -> bool:
    run, n = r.discard, r.subscribers
    server, small_server = r.server or 0.0, r.small_server if r.server is not None else 0.0
    total, small_total = run.cpu + server, r.small.cpu + small_server
    projected = at_million(r.small_subscribers, small_total, n, total)
    target = CPU_TARGET[r.engine]
    ok = projected < target
    how = "measured" if n >= MILLION else f"projected from {r.small_subscribers:,} and {n:,}"
    print("\nCPU before SMTP: run_edition into a transport that discards the bytes")
    print(
        f"  client {run.cpu:.1f} s CPU ({run.wall:.1f} s wall) = {run.cpu / n * 1e6:.0f} us/reader "
        f"= {r.per_naive(run.cpu)} naive-render times"
    )
    if r.server is not None:
        print(
            f"  server (PostgreSQL backends, from /proc) {server:.1f} s = "
            f"{r.per_naive(server)} naive-render times (autovacuum {r.server_autovacuum:.1f} s)"
        )
        print(
            f"  total {total:.1f} s = {total / n * 1e6:.0f} us/reader = "
            f"{r.per_naive(total)} naive-render times"
        )
    print(
        f"  until the first batch (plan, render and build {len(run.report.variants)} variants): "
        f"{run.cpu_to_first_batch:.1f} s CPU; personalise + ledger + hand over: "
        f"{run.cpu - run.cpu_to_first_batch:.1f} s CPU (client)"
    )
    equivalent = ""
    if r.naive is not None:
        equivalent = (
            f" (= {target / (r.naive.cpu / r.naive.readers):,.0f} naive-render times on this "
            "machine)"
        )
    print(
        f"  at 1,000,000: {projected:.0f} s CPU, client and server = "
        f"{r.per_naive(projected)} naive-render times ({how}); "
        f"target < {target:.0f} s{equivalent} [{verdict(ok)}]"
    )
    if len(r.small.report.variants) < 0.95 * len(run.report.variants):
        print("  (the smaller run has fewer variants: projections need N >= 20,000)")
    return ok


def _print_smtp(r: Results) -> bool:
    run, sink = r.smtp, r.sink
    sent = run.report.sent
    once = (
        sink.messages == sent == run.report.queued
        and sink.recipients == sent
        and sink.duplicates == 0
        and run.report.failed == 0
    )
    print(f"\nSMTP: run_edition through SmtpTransport ({r.connections} connections) into fastsink")
    print(
        f"  {sent:,} sent, {run.report.failed} failed in {run.wall:.1f} s: "
        f"{run.rate:,.0f} msg/s end to end (plan to last message)"
    )
    server = f", {r.smtp_server:.1f} s in PostgreSQL" if r.server is not None else ""
    print(
        f"  sending alone (after the first batch): {run.send_rate:,.0f} msg/s; "
        f"{run.cpu:.1f} s CPU in the sender{server}, {sink.cpu_seconds:.1f} s in the sink"
    )
    print(
        f"  sink received {sink.messages:,} messages, {sink.bytes / 1e6:,.0f} MB, "
        f"{sink.recipients:,} distinct recipients, {sink.duplicates} duplicates "
        f"[every message exactly once: {verdict(once)}]"
    )
    return once


def _print_rss(r: Results) -> bool:
    n, small = r.subscribers, r.small_subscribers
    peak = max(r.discard.rss_mb, r.smtp.rss_mb)
    growth = r.discard.rss_mb / r.small.rss_mb - 1
    projected = max(at_million(small, r.small.rss_mb, n, r.discard.rss_mb), r.smtp.rss_mb)
    flat = growth <= FLAT
    ok = flat and projected < RSS_TARGET
    print("\npeak RSS (each phase in its own process)")
    print(
        f"  discarding run {r.discard.rss_mb:.0f} MB, SMTP run {r.smtp.rss_mb:.0f} MB; "
        f"discarding run at {small:,} subscribers {r.small.rss_mb:.0f} MB "
        f"(x{n / small:.0f} readers: {growth:+.0%}) [flat in N: {verdict(flat)}]"
    )
    how = "measured" if n >= MILLION else "projected"
    print(
        f"  at 1,000,000: {max(projected, peak):.0f} MB ({how}); "
        f"target < {RSS_TARGET:.0f} MB [{verdict(ok)}]"
    )
    return ok


def _print_baselines(r: Results) -> None:
    n = r.subscribers
    print("\nbaselines (same run)")
    if r.naive is not None:
        per_reader = r.naive.cpu / r.naive.readers
        naive_total = per_reader * n
        print(
            f"  naive (full render per reader, {r.naive.readers} readers): "
            f"{per_reader * 1000:.1f} ms CPU/reader -> {naive_total / 3600:,.1f} h for "
            f"{n:,} ({per_reader * MILLION / 3600:.1f} h for 1,000,000); "
            f"render once per variant is x{naive_total / r.discard.cpu:,.0f} faster"
        )
    complete = _all_arrived(r.raw, r.raw_sink)
    print(
        f"  raw pipelined client, {r.raw.messages:,} personalised messages "
        f"({_kb(r.raw.bytes / max(r.raw.messages, 1))} on average): {r.raw.rate:,.0f} msg/s "
        f"[sink counts match: {verdict(complete)}]"
    )
    sending, end_to_end = r.smtp.send_rate / r.raw.rate, r.smtp.rate / r.raw.rate
    print(
        f"  run_edition reaches {sending:.0%} of it while sending (target >= "
        f"{WHILE_SENDING_TARGET:.0%}: {verdict(sending >= WHILE_SENDING_TARGET)}), "
        f"{end_to_end:.0%} end to end (target >= {END_TO_END_TARGET:.0%}: "
        f"{verdict(end_to_end >= END_TO_END_TARGET)})"
    )
    wide = r.raw_wide
    complete = _all_arrived(wide, r.raw_wide_sink)
    print(
        f"  the same client on {wide.connections} connections at once (as many as the "
        f"sender uses): {wide.rate:,.0f} msg/s [sink counts match: {verdict(complete)}]"
    )
    print(
        f"  run_edition reaches {r.smtp.send_rate / wide.rate:.0%} of it while sending, "
        f"{r.smtp.rate / wide.rate:.0%} end to end (no target yet)"
    )


def _all_arrived(raw: Raw, sink: SinkReport) -> bool:
    """Whether the sink got each message the raw client pushed, once."""
    return sink.messages == raw.messages and sink.duplicates == 0


def print_profile(path: str, top: int = 25) -> None:
    """Where the CPU of the profiled discarding run went, by stage, then the top functions."""
    stats = pstats.Stats(path)
    table = stats.stats  # type: ignore[attr-defined]
    total = max(
        (ct for (f, _, fn), (_, _, _, ct, _) in table.items() if fn == "run_edition"), default=0
    )
    print(f"\nprofile of the discarding run ({path}; cProfile makes it ~2x slower)")
    for suffix, function, label in STAGES:
        found = [
            (calls, ct)
            for (file, _, name), (_, calls, _, ct, _) in table.items()
            if file.endswith(suffix) and name == function
        ]
        if found and total:
            calls, cumulative = max(found, key=lambda item: item[1])
            print(f"  {label:<48} {cumulative:7.1f} s {cumulative / total:6.1%}  {calls:>9,} calls")
    stats.sort_stats("tottime").print_stats(top)
