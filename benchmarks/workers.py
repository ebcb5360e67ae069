"""Workers measured (issue 17): one PostgreSQL edition sent by 1, 2 and 4 processes.

Two ways to use more than one process, both measured into the same fastsink (its own
process), each on the same database with the edition forgotten in between:

- ``run_edition(workers=N)`` (``digest send --workers N``): the run plans, renders and
  checks, then starts ``N - 1`` helper processes that render again and claim batches
  beside it (``FOR UPDATE SKIP LOCKED``);
- two ``digest send --worker`` processes started at once from the command line, as on two
  machines, on an edition the benchmark planned first (``plan_edition``), so both only
  render and send.

Each run reports messages/s end to end and while sending, and the CPU of every party on
the machine: the sending processes (children included), the PostgreSQL backends
(:class:`~benchmarks.pgcpu.ServerCpu`) and the sink. Their sum against ``wall x cores``
says whether the machine, not the code, is what stops a second worker from doubling the
rate.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import exists, select

from benchmarks.edition_data import NOW
from benchmarks.fastsink import SinkReport
from benchmarks.pgcpu import ServerCpu, steady_rate
from digest.config import STARTER_CONFIG, Settings, load_settings
from digest.delivery.ledger import DELIVERIES
from digest.planning.plan import get_or_create_edition, plan_edition
from digest.planning.when import Schedule, current_key
from digest.store.db import make_engine
from digest.store.models import DeliveryStatus
from digest.store.schema import open_database


@dataclass(frozen=True)
class WorkerRun:
    """One send of the edition by ``processes`` processes."""

    label: str
    processes: int
    sent: int
    wall: float  # from the start to the last process's end
    sending: float  # from the first message handed over to the end
    client_cpu: float  # every sending process, children included
    server_cpu: float = 0.0
    sink_cpu: float = 0.0
    sink_ok: bool = False  # the sink got each message once
    #: messages sent within ``sending`` (run_edition counts from its first batch's end)
    counted: int = -1
    steady: float = 0.0  # msg/s from 20 % to 80 % of the rows sent (ledger samples)
    machine_cpu: float = 0.0  # every process of the machine, other users' included
    window: float = 0.0  # seconds over which server, sink and machine CPU were counted

    @property
    def rate(self) -> float:
        return self.sent / self.wall if self.wall else 0.0

    @property
    def send_rate(self) -> float:
        counted = self.sent if self.counted < 0 else self.counted
        return counted / self.sending if self.sending else 0.0

    def with_sink(self, server: ServerCpu, sink: SinkReport) -> WorkerRun:
        """This run with what the server, the machine and the sink did meanwhile."""
        return replace(
            self,
            server_cpu=server.seconds,
            sink_cpu=sink.cpu_seconds,
            sink_ok=sink.messages == self.sent and sink.duplicates == 0,
            steady=steady_rate(server.samples, self.sent),
            machine_cpu=server.machine,
            window=server.wall,
        )


def sent_rows(key: str) -> str:
    """The query :class:`ServerCpu` samples: rows of edition ``key`` sent so far."""
    return (
        "SELECT count(*) FROM deliveries d JOIN editions e ON e.id = d.edition_id "
        f"WHERE e.key = '{key}' AND d.status = 'sent'"
    )


def smtp_env(workdir: str, url: str, port: int, connections: int) -> dict[str, str]:
    """The settings of a send into the sink, as ``DIGEST_*`` variables."""
    return {
        "DIGEST_CONFIG": str(Path(workdir) / "digest.toml"),
        "DIGEST_DATABASE_URL": url,
        "DIGEST_TRANSPORT": "smtp",
        "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "DIGEST_SMTP_CONNECTIONS": str(connections),
    }


def smtp_settings(workdir: str, url: str, port: int, connections: int) -> Settings:
    config = Path(workdir) / "digest.toml"
    config.write_text(STARTER_CONFIG, encoding="utf-8")
    env = smtp_env(workdir, url, port, connections)
    del env["DIGEST_CONFIG"]
    return load_settings(config, env=env)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phase_cli_workers(
    workdir: str, url: str, port: int, connections: int, processes: int
) -> WorkerRun:
    """Plan the edition here, then start ``processes`` × ``digest send --worker`` at once
    and wait for them; returns the figures of their send."""
    settings = smtp_settings(workdir, url, port, connections)
    engine = make_engine(url)
    factory = open_database(settings, engine)
    key = current_key(NOW, Schedule.from_settings(settings))
    edition, _ = get_or_create_edition(factory, key, now=NOW)
    assert edition is not None
    assert edition.id is not None
    planned = plan_edition(factory, settings, edition, now=NOW).queued
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
        **smtp_env(workdir, url, port, connections),
        "DIGEST_NOW": NOW.isoformat(),
    }
    command = [sys.executable, "-m", "digest", "send", "--worker"]
    any_sent = select(
        exists().where(
            DELIVERIES.c.edition_id == edition.id,
            DELIVERIES.c.status == DeliveryStatus.SENT.value,
        )
    )
    cpu, started = children_cpu(), time.perf_counter()
    running = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(processes)
    ]
    first = None
    with engine.connect() as connection:
        while first is None and any(p.poll() is None for p in running):
            if connection.scalar(any_sent):
                first = time.perf_counter()
            connection.rollback()
            time.sleep(0.05)
    outputs = [p.communicate()[0].decode() for p in running]
    ended = time.perf_counter()
    engine.dispose()
    for process, output in zip(running, outputs, strict=True):
        if process.returncode:
            raise RuntimeError(f"digest send --worker failed: {output.strip()[-500:]}")
    return WorkerRun(
        label=f"{processes} x `digest send --worker`",
        processes=processes,
        sent=planned,
        wall=ended - started,
        sending=ended - (first or started),
        client_cpu=children_cpu() - cpu,
    )


def print_workers(runs: list[WorkerRun], cores: int) -> None:
    """msg/s, the scaling ratio to one process and where the machine's CPU went."""
    if not runs:
        return
    one = runs[0].steady or runs[0].send_rate
    print(f"\nworkers (PostgreSQL, into fastsink in its own process; {cores} cores)")
    for run in runs:
        ours = run.client_cpu + run.server_cpu + run.sink_cpu
        available = (run.window or run.wall) * cores
        print(
            f"  {run.label:<28} {run.sent:,} sent in {run.wall:.1f} s: {run.rate:,.0f} msg/s "
            f"end to end, {run.steady:,.0f} steady (20-80 % of rows; "
            f"x{run.steady / one:.2f} one process) "
            f"[each message once: {'pass' if run.sink_ok else 'MISS'}]"
        )
        print(
            f"    CPU: senders {run.client_cpu:.1f} s, PostgreSQL {run.server_cpu:.1f} s, "
            f"sink {run.sink_cpu:.1f} s = {ours / available:.0%} of {cores} cores; "
            f"the whole machine {run.machine_cpu / available:.0%} "
            f"(others {max(0.0, run.machine_cpu - ours) / available:.0%}) over "
            f"{available / cores:.0f} s"
        )
    if any(r.label.endswith("--worker`") for r in runs):
        print("  (the `--worker` processes' edition was planned by the benchmark beforehand;")
        print("   that planning's server CPU is in their PostgreSQL figure)")
    two = [r for r in runs[1:] if r.processes == 2]
    if two and one:
        best = max(r.steady for r in two) / one
        verdict = "pass" if best >= 1.6 else "MISS"
        print(f"  2 processes / 1: x{best:.2f} steady; target >= x1.6 [{verdict}]")
