"""The admin console's reports on real databases (SQLite and PostgreSQL): finding people,
the counts, the import record, and the health figures, derived or counted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from digest.reports import health, people
from tests.admin_pages_support import W48, seed

WEEK = dt.timedelta(weeks=1)


@pytest.fixture
def seeded(factory: sessionmaker[Session], tmp_path: Path) -> sessionmaker[Session]:
    seed(factory, tmp_path)
    return factory


def test_search_needs_a_whole_address_or_a_long_prefix(seeded: sessionmaker[Session]) -> None:
    for short in ("", "  ", "z", "zo", "zoe"):
        with pytest.raises(people.SearchRefused, match=r"at least 4|type an address"):
            people.parse_query(short)
    with pytest.raises(people.SearchRefused, match="no spaces"):
        people.parse_query("zoe @example.org")
    with seeded() as session:
        found = people.find(session, people.parse_query(" ZOE@Example.org "))
        assert [p.email for p in found.people] == ["zoe@example.org"]
        # a prefix is a prefix: LIKE wildcards typed are matched as themselves
        assert people.find(session, people.parse_query("zoe%")).people == ()
        assert people.find(session, people.parse_query("____")).people == ()
        prefix = people.find(session, people.parse_query("new1@"))
        assert [p.email for p in prefix.people] == ["new1@example.org"]
        few = people.find(session, people.Query("new", exact=False), limit=1)
        assert few.more and len(few.people) == 1


def test_a_person_with_consent_deliveries_and_bounces(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        (zoe,) = people.find(session, people.parse_query("zoe@example.org")).people
    assert zoe.status == "active" and zoe.topics == ("Neurology", "Pharmacology")
    assert [(c.source, c.categories, c.confirmed_by) for c in zoe.consents] == [
        ("admin", ("pharmacology",), "admin"),
        ("form", ("pharmacology", "neurology"), "preferences"),
    ]
    assert [(d.edition, d.status) for d in zoe.deliveries] == [
        ("2026-W48", "sent"),
        ("2026-W47", "sent"),
    ]
    assert [(e.kind, e.edition) for e in zoe.events] == [("soft", "2026-W47")]
    assert zoe.suppressed is None


def test_counts_suppressions_and_imports(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        statuses = people.status_counts(session)
        topics = {t.slug: (t.active, t.pending) for t in people.topic_counts(session)}
        assert people.suppression_counts(session) == {"erased": 1}
        erased = people.suppression_lookup(session, "Bounced@Example.net")
        kept = people.suppression_lookup(session, "zoe@example.org")
        imports = people.recent_imports(session)
    assert statuses == {
        "active": 2, "pending": 3, "unsubscribed": 2, "bounced": 0, "complained": 0,
    }  # fmt: skip
    assert topics == {"neurology": (2, 2), "pharmacology": (1, 1)}
    assert erased.reason == "erased" and erased.since is not None
    assert kept.reason is None
    with pytest.raises(people.SearchRefused, match="whole address"):
        people.suppression_lookup(session, "bounced")
    # the dry run wrote nothing and is not recorded; the file's name only, never its folder
    (record,) = imports
    assert record.source == "spring-fair.csv" and record.at == W48 - dt.timedelta(days=1)
    assert (record.rows, record.created, record.unchanged, record.invalid) == (
        4, {"pending": 2}, 1, 1,
    )  # fmt: skip


def test_readers_per_topic_week_by_week(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        weeks = health.topic_weeks(session, now=W48, weeks=6)
    # the week of 19 October, before the first reader, is left out
    assert [w.isoformat() for w in weeks.weeks] == [
        "2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23",
    ]  # fmt: skip
    # zoe (pharmacology from 26 Oct, neurology too from 9 Nov), gone (pharmacology, left
    # 17 Nov), sam (neurology from 2 Nov, left 18 Nov), ann (neurology from 17 Nov);
    # pending people and the erased one are not counted
    assert weeks.counts == {
        "Neurology": (0, 1, 2, 2, 2),
        "Pharmacology": (2, 2, 2, 1, 1),
    }
    table = health.topics_table(weeks)
    assert table.header == ("Week of", "Neurology", "Pharmacology")
    assert table.rows[2] == ("2026-11-09", "2", "2")


def test_what_happened_to_each_edition(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        w47, w48 = health.edition_outcomes(session)
    assert (w47.key, w47.sent, w47.failed, w47.hard, w47.soft) == ("2026-W47", 1001, 20, 3, 2)
    assert (w47.complained, w47.unsubscribed) == (2, 2)
    assert (w48.key, w48.sent, w48.complained, w48.unsubscribed) == ("2026-W48", 4, 1, 0)
    table = health.outcomes_table([w47, w48])
    row = dict(zip(table.header, table.rows[0], strict=True))
    assert row["Complaint %"] == "0.200" and row["Failed %"] == f"{20 / 1021 * 100:.3f}"
    assert dict(zip(table.header, table.rows[1], strict=True))["Complaint %"] == "25.000"


def test_kept_totals_stand_in_for_deleted_rows(seeded: sessionmaker[Session]) -> None:
    from sqlalchemy import delete, update

    from digest.store.models import Delivery, Edition

    with seeded.begin() as session:
        (w47_id,) = session.query(Edition.id).filter_by(key="2026-W47").one()
        session.execute(update(Edition).where(Edition.id == w47_id).values(
            archived_at=W48, totals={"statuses": {"sent": 7, "failed": 1}, "hard": 1,
                                     "soft": 0, "complaint": 0, "unsubscribed": 3},
        ))  # fmt: skip
        session.execute(delete(Delivery).where(Delivery.edition_id == w47_id))
    with seeded() as session:
        w47, _ = health.edition_outcomes(session)
        speeds = health.edition_speeds(session)
    assert (w47.sent, w47.failed, w47.hard, w47.unsubscribed, w47.archived) == (7, 1, 1, 3, True)
    assert [s.key for s in speeds] == ["2026-W48"]


def test_send_speed_of_the_rows_planned_with_the_edition(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        w47, w48 = health.edition_speeds(session)
    # 1000 messages 0.1 s apart; the late reader's message a day later is left out
    assert (w47.key, w47.messages) == ("2026-W47", 1000)
    assert w47.seconds == pytest.approx(99.9)
    assert w47.per_second == pytest.approx(1000 / 99.9)
    assert (w48.messages, w48.seconds) == (4, pytest.approx(0.3))
    assert health.speeds_table([w47, w48]).rows[0] == ("2026-W47", "1000", "99.9", "10.0")


def test_weeks_end_at_midnight_for_joining_and_leaving(factory: sessionmaker[Session]) -> None:
    """Someone who confirms at the very end of a week counts in it; someone who leaves
    then does not (the database's count and the one-by-one count agree on it)."""
    from digest.store.db import transaction
    from subscribers import service
    from tests.conftest import add_categories

    add_categories(factory, "Neurology")
    sunday_midnight = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    with transaction(factory) as session:
        for changed in (False, True):
            prefix = "changed" if changed else "once"
            came = service.add_subscriber(
                session, f"{prefix}.came@example.org", ["neurology"], confirmed=True,
                now=sunday_midnight,
            )  # fmt: skip
            went = service.add_subscriber(
                session, f"{prefix}.went@example.org", ["neurology"], confirmed=True,
                now=sunday_midnight - 2 * WEEK,
            )  # fmt: skip
            if changed:  # a second choice: read one by one
                for reader in (came, went):
                    service.set_categories(session, reader, ["neurology"], now=sunday_midnight)
            service.unsubscribe(session, went, now=sunday_midnight)
    with factory() as session:
        weeks = health.topic_weeks(session, now=W48, weeks=4)
    assert [w.isoformat() for w in weeks.weeks] == [
        "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23",
    ]  # fmt: skip
    # the two who left count in the week of 2 November only, the two who came from the
    # week of 9 November on
    assert weeks.counts == {"Neurology": (2, 2, 2, 2)}


def test_an_import_refused_for_bad_rows_is_not_recorded(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from subscribers.importing import import_csv
    from tests.conftest import add_categories

    add_categories(factory, "Neurology")
    bad = tmp_path / "bad.csv"
    bad.write_text("email,categories\nok@example.org,neurology\nnot-an-address,neurology\n")
    result = import_csv(factory, bad, now=W48)
    assert result.invalid == 1 and not result.written
    with factory() as session:
        assert people.recent_imports(session) == []
    import_csv(factory, bad, now=W48, skip_invalid=True, confirmed=True)
    with factory() as session:
        (record,) = people.recent_imports(session)
    assert (record.source, record.confirmed, record.created, record.invalid) == (
        "bad.csv", True, {"active": 1}, 1,
    )  # fmt: skip
