"""Crash safety: ``kill -9`` a real ``digest send`` at twelve random moments, resuming each
time, then finish the edition. Every reader ends with exactly one ``sent`` row; each resume
re-sends at most one message per SMTP connection (the one whose end of data was on the wire
without a recorded reply), with its original Message-ID, and marks at least every message
that reached a reader twice.

Size: 2,000 readers in batches of 100 over 2 connections (20,000 readers took several
minutes on a 2-core CI machine for the same checks: every kill lands within the first
sends, so a larger edition adds only the final run's time)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from digest.config import STARTER_CONFIG
from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction
from digest.store.models import Delivery
from subscribers import service
from subscribers.models import Subscriber
from tests.conftest import SmtpServer, add_categories, add_summary

READERS = 2000
BATCH = 100
CONNECTIONS = 2
KILLS = 12


def digest_send(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
    )


def test_kill_9_at_random_moments_resends_only_what_was_on_the_wire(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    config = tmp_path / "digest.toml"
    chosen = {
        "transport": '"smtp"',
        "smtp_url": f'"{smtp_server.url}"',
        "send_batch_size": str(BATCH),
        "smtp_connections": str(CONNECTIONS),
    }
    kept = [line for line in STARTER_CONFIG.splitlines() if line.split(" =")[0] not in chosen]
    config.write_text("\n".join(kept + [f"{k} = {v}" for k, v in chosen.items()]) + "\n")
    engine = make_engine(f"sqlite:///{tmp_path / 'digest.sqlite3'}")
    schema.upgrade(engine)
    factory = session_factory(engine)
    now = dt.datetime.now(dt.UTC)
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], now - dt.timedelta(days=1))
    with transaction(factory) as session:
        for i in range(READERS):
            service.add_subscriber(
                session, f"r{i:04d}@example.org", ["pharmacology"], confirmed=True, now=now
            )

    def marked() -> set[str]:
        """Readers whose row carries the in-flight mark (counted as possibly twice)."""
        with factory() as session:
            return set(
                session.scalars(
                    select(Subscriber.email)
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .where(Delivery.possibly_duplicated)
                )
            )

    rng = random.Random(20261204)
    received = smtp_server.handler.messages
    kills = 0
    seen: set[str] = set()
    marks: set[str] = set()
    for number in range(KILLS + 1):
        started_at = len(received)
        process = digest_send(config)
        if number == KILLS:  # the last run finishes the edition
            output = process.communicate(timeout=300)[0].decode()
            assert process.returncode == 0, output
        elif number % 3 == 0:
            # a random moment of its first second or so: start-up, resume, planning, render
            time.sleep(rng.uniform(0, 1.2))
        else:
            # a random moment while it sends: after 1 to 60 more messages arrive, plus up to
            # 20 ms, which lands anywhere in claim, hand-over, reply or record
            target = len(received) + rng.randint(1, 60)
            deadline = time.monotonic() + 60
            while len(received) < target and process.poll() is None:
                assert time.monotonic() < deadline, "no message arrived in 60 s"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        if number < KILLS:
            assert process.poll() is None, "a run ended before its kill"
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        # what this run sent to readers who already had it: only rows its resume (or an
        # earlier one) marked, and each resume marks at most one row per connection
        this_run = [r for m in received[started_at:] for r in m.recipients]
        again = [r for r in this_run if r in seen]
        now_marked = marked()
        assert len(now_marked - marks) <= CONNECTIONS, (number, now_marked - marks)
        assert set(again) <= now_marked, (number, set(again) - now_marked)
        marks = now_marked
        seen.update(this_run)

    assert kills == KILLS
    with factory() as session:
        statuses = session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    assert dict(statuses) == {"sent": READERS}

    ids: dict[str, list[str]] = defaultdict(list)
    for message in received:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        for recipient in message.recipients:
            ids[recipient].append(str(parsed["Message-ID"]))
    assert len(ids) == READERS  # nobody missed
    doubled = {r: m for r, m in ids.items() if len(m) > 1}
    for recipient, message_ids in doubled.items():
        assert len(set(message_ids)) == 1, recipient  # a resend reuses its Message-ID
    extra = sum(len(m) - 1 for m in doubled.values())
    assert extra <= KILLS * CONNECTIONS  # at most what was on the wire at each kill
    assert set(doubled) <= marks  # every reader who got it twice is counted as possibly so
    # the last run's report: the exact count its resume marked, at most one per connection
    match = re.search(r"(\d+) messages may have reached readers twice", output)
    reported = int(match.group(1)) if match else 0
    assert reported <= CONNECTIONS, output
