"""Claim and send an edition's rows until none is left: what a run and each worker do.

Also the steps both take before their first claim: render the variants that have rows
waiting, put them through the preflight, and fix what every message shares
(:class:`~digest.delivery.sender.Outbound`: templates, envelope sender, DKIM).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.delivery import ledger
from digest.delivery.ahead import ClaimAhead
from digest.delivery.journal import FileJournal
from digest.delivery.ledger import PendingVariant
from digest.delivery.limits import batch_size
from digest.delivery.sender import Outbound, Sender, backoff_delays
from digest.edition.checks import check_renders, preflight
from digest.edition.variants import Built, Renders, render_each
from digest.mail.dkim import DkimSigner
from digest.mail.verp import envelope_sender
from digest.planning.catalog import load_contents
from digest.planning.plan import EditionRef
from digest.render.renderer import Renderer
from digest.store.db import utcnow
from digest.store.models import DeliveryStatus

Progress = Callable[[int, int, int], None]  # done, total, failed


@dataclass(frozen=True)
class SendOptions:
    """How a run sends; the defaults come from the settings."""

    progress: Progress | None = None
    retry_delays: Sequence[float] | None = None
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    workers: int = 1  # processes sending this edition (PostgreSQL)
    retry_failed: bool = False


def pending_variants(factory: sessionmaker[Session], edition: EditionRef) -> list[PendingVariant]:
    """The edition's variants that still have rows to send."""
    assert edition.id is not None
    with factory() as session:
        return ledger.pending_by_variant(session, edition.id)


def render_pending(
    factory: sessionmaker[Session],
    renderer: Renderer,
    cap: int,
    pending: Sequence[PendingVariant],
    *,
    date: dt.datetime,
    edition: str | None = None,
) -> Renders:
    """Read what each pending variant shows (dated by its ``edition``), once, and render
    and build it."""
    with factory() as session:
        contents = load_contents(session, [v.key for v in pending], cap, edition=edition)
    return render_each(renderer, contents, date=date, web_ids={v.key: v.web_id for v in pending})


def check_pending(renderer: Renderer, pending: Sequence[PendingVariant], renders: Renders) -> Built:
    """The preflight of what :func:`render_pending` made: PreflightError before any message
    goes out, else the built variants."""
    numbered = [(v.number, v.key) for v in pending]
    web_ids = {v.key: v.web_id for v in pending}
    return preflight(check_renders(renderer, numbered, renders, web_ids=web_ids))


def outbound_for(
    settings: Settings, edition_key: str, pending: Sequence[PendingVariant], built: Built
) -> Outbound:
    """What every message of the run shares. A bad DKIM key fails here, before any send."""
    signer = DkimSigner.from_settings(settings)
    return Outbound(
        sender=partial(envelope_sender, settings),
        sign=signer.sign if signer is not None else None,
        edition_key=edition_key,
        templates={v.id: built[v.key][1] for v in pending},
        numbers={v.id: v.number for v in pending},
    )


def prepare(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: EditionRef,
    *,
    now: dt.datetime | None = None,
) -> tuple[Outbound, int]:
    """Render, preflight and build every variant with rows still to send; returns them and
    how many rows are waiting (a worker process's whole preparation). ``now`` dates the
    messages (default: the real time)."""
    pending = pending_variants(factory, edition)
    renderer = Renderer(settings)
    renders = render_pending(
        factory,
        renderer,
        settings.card_cap,
        pending,
        date=now or utcnow(),
        edition=edition.key,
    )
    built = check_pending(renderer, pending, renders)
    return outbound_for(settings, edition.key, pending, built), sum(v.waiting for v in pending)


def send_passes(
    factory: sessionmaker[Session],
    settings: Settings,
    edition_id: int,
    sender: Sender,
    options: SendOptions,
    total: int,
    *,
    journal: FileJournal | None = None,
    holds: Callable[[], bool] | None = None,
) -> bool:
    """Claim and send until nothing is left, retrying deferred rows after back-off delays.
    Returns True when it stopped early (a stop request or the edition was cancelled).
    Each claim is noted in ``journal`` before it commits; a sender that can no longer
    prove it ``holds`` the edition claims nothing more (SendLockLost). The next batch is
    claimed while one goes out (:class:`ClaimAhead`)."""
    delays = options.retry_delays
    if delays is None:
        delays = backoff_delays(settings.send_retries, settings.retry_base_seconds)
    claims = ClaimAhead(
        factory,
        edition_id,
        sender.outbound.edition_key,
        batch_size(settings),
        on_claim=journal.claimed if journal is not None else None,
        holds=holds,
    )
    done = 0
    with closing(claims):
        for delay in (0.0, *delays):
            if delay:
                with factory() as session:
                    deferred = ledger.count(session, edition_id, (DeliveryStatus.DEFERRED.value,))
                    if deferred <= len(sender.held_back):  # those wait for the next run
                        break
                options.sleep(delay)
            stopped, done = _one_pass(claims, sender, options, total, done)
            if stopped:
                return True
    return False


def _one_pass(
    claims: ClaimAhead, sender: Sender, options: SendOptions, total: int, done: int
) -> tuple[bool, int]:
    """Send every claimable row once, claiming each batch while the one before goes out.
    Returns whether it stopped early (a stop request, the edition cancelled or paused) and
    how many rows are done so far."""
    if options.should_stop():
        return True, done
    batch = claims.claim_now()
    while batch:
        claims.claim_next(batch[-1].delivery_id)
        done += sender.send_batch(batch)  # raises: the next batch is given back
        if options.progress:
            options.progress(done, total, sender.tally.failed)  # may pass total: retries
        if options.should_stop():
            return True, done  # the next batch is given back
        batch = claims.take()
    return batch is None, done  # None: cancelled or paused
