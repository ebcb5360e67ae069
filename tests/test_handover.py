"""The sender's outcome handover: the batch's thread takes outcomes in runs, and is woken
by a full run, by a connection's end, or by its wait running out (so that a slow send
still records and reports its outcomes every half second)."""

from __future__ import annotations

import threading
from typing import Any

from digest.delivery.ledger import Claim
from digest.delivery.sender import _Handover


def claim(delivery_id: int) -> Claim:
    return Claim(
        delivery_id, 1, f"<m{delivery_id}@example.org>", "queued", 1, False, None, None, None, None
    )


def outcome(delivery_id: int) -> dict[str, object]:
    return {"id": delivery_id, "status": "sent"}


def test_fewer_outcomes_than_a_run_are_taken_when_the_wait_runs_out() -> None:
    handover = _Handover(every=100, wait=0.05)
    for delivery_id in (1, 2, 3):
        handover.put(claim(delivery_id), outcome(delivery_id))
    result: list[Any] = []
    taker = threading.Thread(target=lambda: result.append(handover.take()), daemon=True)
    taker.start()
    taker.join(20)
    assert not taker.is_alive()
    rows, ended = result[0]
    assert [item.delivery_id for item, _ in rows] == [1, 2, 3]
    assert ended == []
    assert handover.take() == ([], [])  # taken once only


def test_a_full_run_wakes_the_taker_long_before_its_wait() -> None:
    handover = _Handover(every=50, wait=3600)  # never woken by the wait in this test
    taken: list[int] = []
    taker = threading.Thread(
        target=lambda: taken.extend(item.delivery_id for item, _ in handover.take()[0]),
        daemon=True,  # a taker never woken must not keep the test run alive
    )
    taker.start()
    for delivery_id in range(1, 51):
        handover.put(claim(delivery_id), outcome(delivery_id))
    taker.join(20)
    assert not taker.is_alive()
    assert taken == list(range(1, 51))


def test_a_connection_ending_wakes_the_taker_with_what_it_put_before() -> None:
    handover = _Handover(every=100, wait=3600)
    result: list[tuple[list[tuple[Claim, dict[str, object]]], list[Any]]] = []
    taker = threading.Thread(target=lambda: result.append(handover.take()), daemon=True)
    taker.start()
    handover.put(claim(7), outcome(7))
    unsent = [claim(8)]
    handover.end((unsent, None))
    taker.join(20)
    assert not taker.is_alive()
    rows, ended = result[0]
    assert [(item.delivery_id, row) for item, row in rows] == [(7, outcome(7))]
    assert ended == [(unsent, None)]
