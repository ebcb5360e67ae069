"""Crash safety: ``kill -9`` a real ``digest send`` at random moments, then finish the
edition. Every reader ends with exactly one ``sent`` row; a message re-sent after a crash
is one that was in flight, and it carries its original Message-ID."""

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
from digest.store.db import make_engine, session_factory
from digest.store.models import Delivery
from tests.conftest import SmtpServer, add_categories, add_reader, add_summary

READERS = 1000
BATCH = 10
KILLS = 12


def digest_send(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
    )


def test_kill_9_at_random_moments_never_loses_or_doubles_a_reader(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    config = tmp_path / "digest.toml"
    chosen = {
        "transport": '"smtp"',
        "smtp_url": f'"{smtp_server.url}"',
        "send_batch_size": str(BATCH),
        "smtp_connections": "1",
    }
    kept = [line for line in STARTER_CONFIG.splitlines() if line.split(" =")[0] not in chosen]
    config.write_text("\n".join(kept + [f"{k} = {v}" for k, v in chosen.items()]) + "\n")
    engine = make_engine(f"sqlite:///{tmp_path / 'digest.sqlite3'}")
    schema.upgrade(engine)
    factory = session_factory(engine)
    now = dt.datetime.now(dt.UTC)
    add_categories(factory, "Pharmacology")
    add_summary(factory, "A study", ["pharmacology"], now - dt.timedelta(days=1))
    for i in range(READERS):
        add_reader(factory, f"r{i:03d}@example.org", ["pharmacology"], joined=now)

    rng = random.Random(20261127)
    kills = 0
    received = smtp_server.handler.messages
    for number in range(KILLS):
        process = digest_send(config)
        if number % 2:
            # at a random moment of its first second or so: starting, planning, rendering
            # or its first batches
            time.sleep(rng.uniform(0, 1.2))
        else:
            # at a random moment while it sends: after 1 to 40 more messages arrive, plus
            # up to 20 ms, which lands anywhere in claim, hand-over or record
            target = len(received) + rng.randint(1, 40)
            deadline = time.monotonic() + 30
            while len(received) < target and process.poll() is None:
                assert time.monotonic() < deadline, "no message arrived in 30 s"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    before_final = len(received)
    final = digest_send(config)
    output = final.communicate(timeout=120)[0].decode()
    assert final.returncode == 0, output

    with factory() as session:
        statuses = session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    assert dict(statuses) == {"sent": READERS}

    ids: dict[str, list[str]] = defaultdict(list)
    for message in smtp_server.handler.messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        for recipient in message.recipients:
            ids[recipient].append(str(parsed["Message-ID"]))
    assert len(ids) == READERS  # nobody missed
    doubled = {r: m for r, m in ids.items() if len(m) > 1}
    for recipient, message_ids in doubled.items():
        assert len(set(message_ids)) == 1, recipient  # a resend reuses its Message-ID
    # at most the batch in flight at each kill went out twice
    assert sum(len(m) - 1 for m in doubled.values()) <= kills * BATCH
    assert kills == KILLS  # every run was killed before the end
    # the last run says how many it sent that were in flight at the last crash: at most
    # one batch, and at least those that had reached the server before
    earlier = {r for m in received[:before_final] for r in m.recipients}
    again = sum(r in earlier for m in received[before_final:] for r in m.recipients)
    match = re.search(r"(\d+) messages were in flight during an earlier crash", output)
    reported = int(match.group(1)) if match else 0
    assert again <= reported <= BATCH, output
