"""The import's merge rules, without a database: frozen rows in, frozen rows out."""

from __future__ import annotations

import datetime as dt

from subscribers.csvio import ImportRow, RowProblem
from subscribers.merging import Close, Known, Options, Update, collapse, plan_batch
from tests.conftest import NOW

OPTIONS = Options(now=NOW, confirmed=True, version="2026-11", first_new_id=10)
LEFT = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def row(line: int, email: str, *categories: int, **values: object) -> ImportRow:
    slugs = tuple(f"c{c}" for c in categories)
    return ImportRow(line, email, values.pop("name", None), categories, slugs, **values)


def known(id: int, email: str, status: str, *categories: int, **values: object) -> Known:
    fields: dict[str, object] = {"name": None, "timezone": None, "unsubscribed_at": None}
    fields.update(values)
    return Known(id, email, f"hash-{email}", status, category_ids=frozenset(categories), **fields)


def test_rows_of_one_address_are_joined_with_the_stricter_status() -> None:
    batch = collapse(
        [
            row(2, "ada@example.org", 1, name="Ada"),
            RowProblem(3, "bad"),
            row(4, "ADA@example.org", 2, status="unsubscribed"),
        ]
    )
    assert (batch.read, batch.duplicates, batch.problems) == (3, 1, (RowProblem(3, "bad"),))
    ada = batch.rows["ada@example.org"]
    assert (ada.name, ada.category_ids, ada.status) == ("Ada", (1, 2), "unsubscribed")


def test_new_known_closed_and_suppressed_addresses() -> None:
    rows = {
        "new@example.org": row(2, "new@example.org", 1),
        "pend@example.org": row(3, "pend@example.org", 1, 2, name="Pat"),
        "left@example.org": row(4, "left@example.org", 1),
        "spam@example.org": row(5, "spam@example.org", 1),
        "gone@example.org": row(6, "gone@example.org", 1, status="bounced"),
    }
    stored = {
        "pend@example.org": known(1, "pend@example.org", "pending", 1),
        "left@example.org": known(2, "left@example.org", "unsubscribed", 1, unsubscribed_at=LEFT),
        "gone@example.org": known(3, "gone@example.org", "active", 1),
    }
    hashes = {"new@example.org": "h-new", "spam@example.org": "h-spam"}
    plan = plan_batch(rows, stored, hashes, {"h-spam": "complained"}, OPTIONS)
    (new,) = plan.new
    assert (new.email, new.status, new.active_since, new.consent.confirmed_by) == (
        "new@example.org",
        "active",
        NOW,
        "import",
    )
    assert plan.changes == (
        Update(1, (2,), "Pat", None, "2026-11", NOW),  # categories added, name filled, confirmed
        Close(3, "bounced", NOW),
    )
    assert [(n.line, n.reason.split(":")[0]) for n in plan.notices] == [
        (4, "left@example.org is unsubscribed since 2026-01-05"),
        (5, "spam@example.org is on the suppression list (complained)"),
    ]
    assert dict(plan.outcomes) == {"merged": 2, "kept_out": 2}


def test_a_suppressed_pending_address_is_left_pending_by_a_confirmed_import() -> None:
    stored = {"pend@example.org": known(1, "pend@example.org", "pending", 1, listed="bounced")}
    rows = {"pend@example.org": row(2, "pend@example.org", 1)}
    plan = plan_batch(rows, stored, {}, {}, OPTIONS)
    assert plan.changes == (Update(1, (), None, None, "2026-11", None),)  # consent, no confirm
    assert plan.notices[0].reason.startswith(
        "pend@example.org is suppressed (bounced): left pending (only its owner"
    )
    assert dict(plan.outcomes) == {"kept_out": 1}
