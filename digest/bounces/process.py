"""Process reports: parse, match, classify, apply; one transaction and one line per message."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.bounces.apply import Outcome, apply, record
from digest.bounces.classify import COMPLAINT, IGNORED, classify, describe
from digest.bounces.match import Match, match_recipient, match_report, reader_only
from digest.bounces.parse import Recipient, Report, parse_message
from digest.config import Settings
from digest.errors import DataError, EditionError
from digest.store.db import transaction
from digest.store.models import Edition, EditionStatus

#: Order of the final counts.
COUNTS = (
    "hard",
    "soft",
    "policy",
    "complaint",
    "autoreply",
    "ignored",
    "unmatched",
    "duplicate",
    "unknown",
    "malformed",
)


@dataclass
class ProcessReport:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        shown = [f"{self.counts[name]} {name}" for name in COUNTS if self.counts[name]]
        total = sum(1 for _ in self.lines)
        return f"{total} message(s): " + (", ".join(shown) or "nothing")


def secret_of(settings: Settings) -> bytes | None:
    return settings.verp_secret.encode("utf-8") if settings.verp_secret else None


def process_messages(
    factory: sessionmaker[Session],
    settings: Settings,
    messages: Iterable[tuple[str, bytes]],
    *,
    now: dt.datetime,
    envelope_to: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ProcessReport:
    """Process ``(label, bytes)`` pairs; a bad message is reported and the rest go on."""
    result = ProcessReport()
    secret = secret_of(settings)
    for label, raw in messages:
        try:
            report = parse_message(raw, envelope_to=envelope_to)
        except DataError as exc:
            outcomes = [Outcome("malformed", f"malformed: {exc}")]
        else:
            with transaction(factory) as session:
                outcomes = handle(session, report, secret, now=now)
        for outcome in outcomes:
            line = f"{label}: {outcome.line}"
            result.lines.append(line)
            result.counts[outcome.counted] += 1
            if on_line:
                on_line(line)
            if outcome.warning:
                result.warnings.append(outcome.warning)
                if on_line:
                    on_line(outcome.warning)
    return result


def handle(
    session: Session, report: Report, secret: bytes | None, *, now: dt.datetime
) -> list[Outcome]:
    """Everything one parsed report leads to (one outcome per recipient block)."""
    if report.kind == "autoreply":
        return [Outcome("autoreply", f"auto-reply ignored ({report.subject[:60]!r})")]
    if report.kind == "unknown":
        return [Outcome("unknown", f"not processed: {report.why} ({report.subject[:60]!r})")]
    whole = match_report(session, report, secret)
    if report.kind == "complaint":
        if report.feedback_type == "not-spam":
            return [Outcome("ignored", "feedback report 'not-spam' ignored")]
        recipient = report.recipients[0] if report.recipients else Recipient("", "complained", "")
        # a complaint naming only its recipient still finds them: complaints are never lost
        match = match_recipient(session, report, recipient, whole) or reader_only(
            session, report, recipient.original or recipient.address
        )
        return [_one(session, report, recipient, COMPLAINT, match, now=now)]
    return [
        _one(
            session,
            report,
            recipient,
            classify(recipient.action, recipient.status, recipient.diagnostic),
            match_recipient(session, report, recipient, whole),
            now=now,
        )
        for recipient in report.recipients
    ]


def _one(
    session: Session,
    report: Report,
    recipient: Recipient,
    kind: str,
    match: Match | None,
    *,
    now: dt.datetime,
) -> Outcome:
    status = report.feedback_type if kind == COMPLAINT else recipient.status
    what = describe(kind, recipient.status if kind != COMPLAINT else "")
    if kind == COMPLAINT and report.feedback_type != "abuse":
        what += f" ({report.feedback_type})"
    who = recipient.address or "(address not given)"
    if kind == IGNORED:
        return Outcome("ignored", f"{who}: {what} (action {recipient.action}), nothing to do")
    detail = recipient.diagnostic
    if not record(
        session,
        kind=kind,
        status=status,
        reference=report.reference,
        address=recipient.address,
        match=match,
        detail=detail,
        now=now,
    ):
        return Outcome("duplicate", f"{who}: {what}: already processed, nothing done")
    if match is None:
        return Outcome(
            "unmatched",
            f"{who}: {what}: matches no delivery (no valid VERP address, known Message-ID "
            "or subscriber address); nothing done",
        )
    reader = match.address or "(erased subscriber)"
    done, warning = apply(session, kind, status, match, detail, now=now)
    where = (
        f"edition {match.edition_key}, delivery {match.delivery_id}"
        if match.delivery_id is not None
        else "no delivery"
    )
    line = f"{what} for {reader} ({where}, matched by {match.how}): {done}"
    return Outcome(kind, line, warning)


def resume_edition(session: Session, key: str) -> None:
    """Reopen an edition paused by a policy bounce; ``digest send`` then goes on with it."""
    edition = session.scalar(select(Edition).where(Edition.key == key))
    if edition is None:
        raise EditionError(f"no edition {key}")
    if edition.status != EditionStatus.PAUSED:
        raise EditionError(f"edition {key} is {edition.status}, not paused")
    edition.status = EditionStatus.OPEN.value
