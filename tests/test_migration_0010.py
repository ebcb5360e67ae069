"""Migration 0010 on both databases: bounce events stored before it lose the webhook
payloads and addresses they kept, and say they matched; editions gain their totals."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from digest.store import schema

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def test_old_bounce_events_are_scrubbed(engine: Engine) -> None:
    schema.downgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO editions (id, key, cutoff, status, created_at) "
                "VALUES (1, '2026-W48', :now, 'complete', :now)"
            ),
            {"now": NOW},
        )
        rows = [
            ('json:{"recipient": "ok4@example.org", "type": "bounce"}', "550 <ok4@example.org>", 1),
            ("<dsn-1@mx.example>", "452 mailbox full", None),
        ]
        for number, (reference, detail, edition) in enumerate(rows, 1):
            conn.execute(
                text(
                    "INSERT INTO bounce_events (received_at, kind, status, reference, "
                    "fingerprint, detail, edition_id) VALUES (:now, 'hard', '5.1.1', :ref, "
                    ":fp, :detail, :edition)"
                ),
                {"now": NOW, "ref": reference, "fp": f"{number:064d}", "detail": detail,
                 "edition": edition},
            )  # fmt: skip
    schema.upgrade(engine)
    with engine.connect() as conn:
        events = conn.execute(
            text("SELECT reference, detail, matched_by FROM bounce_events ORDER BY id")
        ).all()
        totals = conn.execute(text("SELECT archived_at, totals FROM editions")).one()
    assert events[0][0].startswith("json:sha256:") and "ok4" not in events[0][0]
    assert events[0][1] == "550 <[address]>"
    assert events[1][0] == "<dsn-1@mx.example>" and events[1][1] == "452 mailbox full"
    assert [e[2] for e in events] == [None, None]  # no delivery: they matched nobody
    assert tuple(totals) == (None, None)
    schema.downgrade(engine, "0009")
    schema.upgrade(engine)
