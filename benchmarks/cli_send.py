"""``digest send`` from the command line into an independent sink, against the raw client
(issue 17: a 20k send from the CLI reaches the benchmark's share of the ceiling while
sending).

It generates N subscribers in a SQLite file (benchmarks/edition_data.py), starts
benchmarks/fastsink.py in a process of its own, and runs ``python -m digest send`` as an
admin would (its settings as ``DIGEST_*`` variables, ``DIGEST_NOW`` set to the data's
week), while this process counts the ledger's sent rows every 50 ms on a read-only
connection. It then pushes 5,000 of the same personalised messages with the raw pipelined
client into fresh sinks, on one connection and on as many as the send used.

    .venv/bin/python -m benchmarks.cli_send [--subscribers 20000] [--connections 4]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from benchmarks.edition_data import NOW, generate
from benchmarks.fastsink import SinkProcess, SinkReport
from benchmarks.pgcpu import steady_rate
from benchmarks.send_edition import phase_raw
from benchmarks.workers import smtp_env
from digest.config import STARTER_CONFIG, load_settings
from digest.planning.when import Schedule, current_key

RAW_SAMPLE = 5000
POLL = 0.05
SENT = (
    "SELECT count(*) FROM deliveries AS d JOIN editions AS e ON e.id = d.edition_id"
    " WHERE e.key = ? AND d.status = 'sent'"
)


def send(
    folder: Path, url: str, database: Path, key: str, connections: int
) -> tuple[float, list[tuple[float, int]], SinkReport, str]:
    """Run ``digest send`` into a sink; its wall time, the sent count over time (seconds
    since the command started, the last one after it ended), what the sink got, and the
    command's last line. Its output goes to a file: a pipe read only at the end would
    stop the command once the pipe is full."""
    with SinkProcess() as sink, (folder / "send.log").open("w+b") as log:
        env = {**os.environ, **smtp_env(str(folder), url, sink.port, connections)}
        env["DIGEST_NOW"] = NOW.isoformat()
        started = time.perf_counter()
        command = subprocess.Popen(
            [sys.executable, "-m", "digest", "send"],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        samples: list[tuple[float, int]] = []
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as ledger:
            while True:
                ended = command.poll() is not None
                (sent,) = ledger.execute(SENT, (key,)).fetchone()
                samples.append((time.perf_counter() - started, sent))
                if ended:
                    break
                time.sleep(POLL)
        wall = samples[-1][0]  # the sample taken once the command had ended
        log.seek(0)
        output = log.read().decode()
        received = sink.stop()
    if command.returncode:
        raise SystemExit(f"digest send failed ({command.returncode}):\n{output[-2000:]}")
    return wall, samples, received, output.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    n = args.subscribers
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        database = folder / "cli.sqlite3"
        url = f"sqlite:///{database}"
        (folder / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
        print(f"  .. filling the database with {n:,} subscribers", flush=True)
        generate(url, n)
        settings = load_settings(folder / "digest.toml", env={"DIGEST_DATABASE_URL": url})
        key = current_key(NOW, Schedule.from_settings(settings))
        print("  .. digest send into fastsink (its own process)", flush=True)
        wall, samples, received, said = send(folder, url, database, key, args.connections)
        print("  .. raw pipelined client, same messages, fresh sinks", flush=True)
        with SinkProcess() as one, SinkProcess() as wide:
            raw_one, raw_wide = phase_raw(
                str(folder), url, key, RAW_SAMPLE, (one.port, wide.port), args.connections
            )
    sent = samples[-1][1] if samples else 0
    first = next((t for t, count in samples if count), wall)
    sending = sent / (samples[-1][0] - first) if samples and samples[-1][0] > first else 0.0
    steady = steady_rate(samples, n)
    exact = received.messages == received.recipients == sent == n and not received.duplicates
    print(f"\n== cli_send: {n:,} subscribers, SQLite, {args.connections} SMTP connections ==")
    print(f"digest send said: {said}")
    print(
        f"sink: {received.messages:,} messages to {received.recipients:,} recipients, "
        f"{received.duplicates} duplicates; ledger {sent:,} sent "
        f"[every message exactly once: {'pass' if exact else 'FAIL'}]"
    )
    print(f"raw pipelined client: {raw_one.rate:,.0f} msg/s on one connection, ", end="")
    print(f"{raw_wide.rate:,.0f} on {args.connections}")
    for label, rate in (
        ("end to end (the command's start to its exit)", n / wall),
        ("while sending (first sent row to the last)", sending),
        ("steady (20 % to 80 % sent)", steady),
    ):
        print(
            f"  {label:<46} {rate:7,.0f} msg/s = {rate / raw_one.rate:4.0%} of one raw "
            f"connection, {rate / raw_wide.rate:4.0%} of {args.connections}"
        )
    if not exact:
        raise SystemExit("the sink's counts do not match the ledger's")


if __name__ == "__main__":
    main()
