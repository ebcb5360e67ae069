"""The admin console (:func:`digest.web.admin.create_admin_app`, on loopback without a
password) for the list and health pages' tests, and a list with a history to show."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.web.admin import create_admin_app

#: The CSRF token of every test client's session (see :func:`console_client`).
CSRF = "test-csrf-token"


def admin_app(
    settings: Settings, factory: sessionmaker[Session], now: Callable[[], dt.datetime]
) -> Flask:
    """The console, its list pages under /admin/list and health pages under /admin/health."""
    app = create_admin_app(settings, factory.kw["bind"], now=now)
    app.extensions["admin_csrf"] = CSRF
    return app


def console_client(app: Flask) -> FlaskClient:
    """A test client whose session holds the CSRF token ``CSRF``."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = CSRF
    return client


# ---------------------------------------------------------------- a list with a history

W47 = dt.datetime(2026, 11, 16, 8, 0, tzinfo=dt.UTC)  # Monday of 2026-W47
W48 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)  # Monday of 2026-W48 (tests' NOW)


def seed(factory: sessionmaker[Session], tmp_path: Path) -> None:
    """Readers who joined, changed topics and left over five weeks; two editions sent
    (2026-W47 to 1000 readers: 20 failed, 2 complaints, 3 hard and 1 soft bounce;
    2026-W48 to 4: 1 complaint, over the 0.3 % limit) whose messages went out over known
    times; an import written from a file and one dry run."""
    from digest.store.db import transaction
    from digest.store.models import BounceEvent, Delivery, Edition, Variant
    from subscribers import service
    from subscribers.importing import import_csv
    from subscribers.models import Subscriber
    from tests.conftest import add_categories

    add_categories(factory, "Pharmacology", "Neurology")
    week = dt.timedelta(weeks=1)
    with transaction(factory) as session:

        def reader(address: str, topics: list[str], joined: dt.datetime) -> Subscriber:
            return service.add_subscriber(session, address, topics, confirmed=True, now=joined)

        zoe = reader("zoe@example.org", ["pharmacology"], W47 - 3 * week)
        service.set_categories(session, zoe, ["pharmacology", "neurology"], now=W47 - week)
        sam = reader("sam@example.org", ["neurology"], W47 - 2 * week)
        service.unsubscribe(session, sam, now=W47 + dt.timedelta(days=2))
        reader("ann@example.com", ["neurology"], W47 + dt.timedelta(days=1))
        service.add_subscriber(session, "pending@example.org", ["neurology"], now=W47)
        gone = reader("gone@example.org", ["pharmacology"], W47 - 3 * week)
        service.unsubscribe(session, gone, now=W47 + dt.timedelta(days=1))
        bounced = reader("bounced@example.net", ["pharmacology"], W47 - 3 * week)
        service.erase(session, bounced, now=W47 + dt.timedelta(days=3))
        session.flush()
        people = {s.email: s.id for s in session.query(Subscriber)}

        def edition(key: str, at: dt.datetime, sent: int, failed: int) -> tuple[int, list[int]]:
            row = Edition(key=key, cutoff=at, created_at=at, status="complete")
            session.add(row)
            session.flush()
            variant = Variant(edition_id=row.id, number=1, category_ids=[], summary_ids=[],
                              web_id=f"web-{key}")  # fmt: skip
            session.add(variant)
            session.flush()
            ids = []
            for n in range(sent + failed):
                ok = n < sent
                delivery = Delivery(
                    edition_id=row.id, subscriber_id=None, variant_id=variant.id,
                    status="sent" if ok else "failed", message_id=f"<{key}.{n}@test>",
                    attempts=1, created_at=at, updated_at=at,
                    sent_at=at + dt.timedelta(seconds=n / 10) if ok else None,
                )  # fmt: skip
                session.add(delivery)
                session.flush()
                ids.append(delivery.id)
            return row.id, ids

        w47, ids47 = edition("2026-W47", W47, 1000, 20)
        # a late reader planned later: not part of the send's speed
        late = Delivery(edition_id=w47, subscriber_id=people["ann@example.com"],
                        variant_id=session.query(Variant).filter_by(edition_id=w47).one().id,
                        status="sent", message_id="<late@test>", attempts=1,
                        created_at=W47 + dt.timedelta(days=1), updated_at=W47,
                        sent_at=W47 + dt.timedelta(days=1))  # fmt: skip
        session.add(late)
        # sam, gone and zoe were sent W47: their rows point at them
        for address, delivery_id in zip(
            ("sam@example.org", "gone@example.org", "zoe@example.org"), ids47[:3], strict=True
        ):
            row = session.get(Delivery, delivery_id)
            assert row is not None
            row.subscriber_id = people[address]
        w48, ids48 = edition("2026-W48", W48, 4, 0)
        session.get(Delivery, ids48[0]).subscriber_id = people["zoe@example.org"]  # type: ignore[union-attr]

        def event(
            n: int, kind: str, edition_id: int, delivery_id: int, subscriber: int | None
        ) -> None:
            session.add(BounceEvent(
                received_at=W48 - dt.timedelta(days=2), kind=kind, status="5.1.1",
                delivery_id=delivery_id, subscriber_id=subscriber, edition_id=edition_id,
                matched_by="VERP", reference=f"ref-{n}", fingerprint=f"fp-{n}",
                detail="550 5.1.1 [address] unknown",
            ))  # fmt: skip

        for n, kind in enumerate(["complaint", "complaint", "hard", "hard", "hard", "soft"]):
            event(n, kind, w47, ids47[10 + n], None)
        event(9, "complaint", w48, ids48[1], None)
        event(10, "soft", w47, ids47[2], people["zoe@example.org"])
    csv_file = tmp_path / "spring-fair.csv"
    csv_file.write_text(
        "email,categories\nnew1@example.org,neurology\nnew2@example.org,pharmacology\n"
        "zoe@example.org,neurology\nbad-address,neurology\n",
        encoding="utf-8",
    )
    import_csv(factory, csv_file, now=W48 - dt.timedelta(days=1), skip_invalid=True)
    import_csv(factory, csv_file, now=W48, dry_run=True, skip_invalid=True)
