"""Claim the next batch while this one goes out.

Between two batches the connections used to sit idle while the ledger claimed the next
rows (a tenth of a send's time on SQLite, more on PostgreSQL). :class:`ClaimAhead` claims
batch N+1 on a thread of its own while batch N is sent, so the sender finds it waiting.

What a claimed-ahead batch must not do:

- go out after the run was told to stop, or after its sender lost the edition: it is given
  back untouched (``release``) by :meth:`ClaimAhead.give_back`, also when sending the
  current batch raised;
- go out after the edition was cancelled or paused while it waited: :meth:`ClaimAhead.take`
  asks the edition once more and skips the rows (cancelled, as :func:`ledger.cancel` did to
  the rest) or gives them back (paused).

The outcome journal is told of each claim before it commits, from the claiming thread; it
keeps the lines of the batch still going out (see :meth:`FileJournal.claimed`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.delivery import ledger
from digest.delivery.ledger import Claim
from digest.errors import SendLockLost
from digest.store.db import transaction
from digest.store.models import Edition, EditionStatus

__all__ = ["ClaimAhead"]

OnClaim = Callable[[list[int]], None]


class ClaimAhead:
    """Claims an edition's rows batch by batch, the next one on its own thread.

    ``claim_now`` claims at once (the first batch of a pass); ``claim_next`` starts the
    claim of the batch after the given id and returns; ``take`` waits for it. None from
    either means the edition was cancelled or paused: nothing more goes out. ``close``
    gives back a batch claimed and never taken (use it with ``contextlib.closing``)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        edition_id: int,
        edition_key: str,
        size: int,
        *,
        on_claim: OnClaim | None = None,
        holds: Callable[[], bool] | None = None,
    ) -> None:
        self.factory = factory
        self.edition_id = edition_id
        self.edition_key = edition_key
        self.size = size
        self.on_claim = on_claim
        self.holds = holds
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="digest-claim")
        self._next: Future[list[Claim] | None] | None = None

    def claim_now(self, after: int = 0) -> list[Claim] | None:
        """The next batch after id ``after``, claimed on this thread."""
        self.give_back()
        return self._claim(after)

    def claim_next(self, after: int) -> None:
        """Start claiming the batch after id ``after`` (one at a time: a batch claimed and
        never taken is given back first)."""
        self.give_back()
        self._next = self._pool.submit(self._claim, after)

    def take(self) -> list[Claim] | None:
        """The batch :meth:`claim_next` claimed; None when the edition was cancelled or
        paused before or after its claim (then its rows are skipped or given back).
        Raises SendLockLost when the sender no longer held the edition at the claim."""
        assert self._next is not None, "claim_next was not called"
        future, self._next = self._next, None
        claims = future.result()
        # an empty claim too: on PostgreSQL a cancel's uncommitted update locks the rows it
        # skips, and SKIP LOCKED then finds nothing rather than a cancelled edition
        if claims is not None and self._halted(claims):
            return None
        return claims

    def give_back(self) -> None:
        """Give back a batch claimed ahead and not taken (the run stops, or failed)."""
        if self._next is None:
            return
        future, self._next = self._next, None
        try:
            claims = future.result()
        except SendLockLost:
            return  # nothing was claimed
        ledger.release(self.factory, claims or [])

    def _claim(self, after: int) -> list[Claim] | None:
        if self.holds is not None and not self.holds():
            raise SendLockLost(self.edition_key)
        return ledger.claim(self.factory, self.edition_id, after, self.size, on_claim=self.on_claim)

    def _halted(self, claims: list[Claim]) -> bool:
        """Whether the edition was cancelled or paused since ``claims`` were claimed; if
        so they are skipped (cancelled) or given back (paused)."""
        with self.factory() as session:
            status = session.scalar(select(Edition.status).where(Edition.id == self.edition_id))
        if status in (EditionStatus.CANCELLED, EditionStatus.PAUSED):
            ledger.release(self.factory, claims)
            if status == EditionStatus.CANCELLED:  # skipped, as the cancel did to the rest
                with transaction(self.factory) as session:
                    ledger.skip_cancelled(session, self.edition_id)
            return True
        return False

    def close(self) -> None:
        try:
            self.give_back()
        finally:
            self._pool.shutdown(wait=True)
