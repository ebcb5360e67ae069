"""The rate limit shared through PostgreSQL: exact across processes, per second and per
hour, and a deferral seen by one sender slows all of them."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from digest.config import Settings
from digest.delivery.limits import limiter_for
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.ratelimit_shared import BLOCK_SECONDS, SharedRateLimiter
from digest.store.db import make_engine
from tests.conftest import FakeTime

RELAY = "smtp.example.org:587"
TOL = 0.002  # seconds: how well a process knows the database clock, on a busy machine
F = TypeVar("F", bound=Callable[..., Any])


def on_postgres(test: F) -> F:
    """Run ``test`` only with the PostgreSQL ``engine`` (skipped without one)."""
    test = pytest.mark.parametrize("engine", ["postgres"], indirect=True)(test)
    return pytest.mark.postgres(test)


class Waits:
    """An injected clock and sleep that record when each message may go; sleeps only when
    ``real``."""

    def __init__(self, *, real: bool = False) -> None:
        self.real = real
        self.slept: list[float] = []  # seconds asked for
        self.now = 0.0  # the limiter's last look at the clock

    def clock(self) -> float:
        self.now = time.monotonic()
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.real:
            time.sleep(seconds)

    def wait_of(self, limiter: RateLimiter) -> float:
        """How long ``acquire`` asked to wait (0 when it did not sleep)."""
        before = len(self.slept)
        limiter.acquire()
        return self.slept[-1] if len(self.slept) > before else 0.0

    def slots(self, limiter: RateLimiter, count: int) -> list[float]:
        """The moments (``time.monotonic``) at which ``count`` messages may go."""
        moments = []
        for _ in range(count):
            wait = self.wait_of(limiter)
            moments.append(self.now + wait)  # the clock as acquire last read it, plus the wait
        return moments


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _sender_process(url: str, count: int, rate: float, start: Any, out: Any) -> None:
    """Acquire ``count`` slots; report when each message was allowed to go and when it did
    (``time.monotonic`` is one clock for every process on Linux)."""
    engine = make_engine(url)
    waits = Waits(real=True)
    limiter = SharedRateLimiter(
        engine, RELAY, per_second=rate, clock=waits.clock, sleep=waits.sleep
    )
    with engine.connect():
        pass  # connected before the start, so both processes begin together
    start.wait()
    allowed, went = [], []
    for _ in range(count):
        allowed += waits.slots(limiter, 1)
        went.append(time.monotonic())
    out.put((allowed, went))
    engine.dispose()


@on_postgres
def test_two_processes_share_one_rate_exactly(engine: Engine) -> None:
    rate, each = 40.0, 30
    url = engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_sender_process, args=(url, each, rate, start, out))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    (allowed1, went1), (allowed2, went2) = out.get(timeout=60), out.get(timeout=60)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    allowed, went = sorted(allowed1 + allowed2), sorted(went1 + went2)
    assert len(went) == 2 * each
    # Never two messages closer than the rate, and 60 messages take 59 intervals. Checked on
    # the moments the limiter allowed: a loaded machine may wake a sender late, which no
    # limiter can prevent; what remains is how well each process knows the database clock.
    expected = (2 * each - 1) / rate
    assert min(gaps(allowed)) >= 1 / rate - 0.005
    assert allowed[-1] - allowed[0] >= expected - 0.005  # not 2x the rate
    assert went[-1] - went[0] <= expected + 0.75  # nor much slower


@on_postgres
def test_per_hour_is_exact_across_limiters(engine: Engine) -> None:
    waits = Waits()
    first = SharedRateLimiter(engine, RELAY, per_hour=30, clock=waits.clock, sleep=waits.sleep)
    second = SharedRateLimiter(engine, RELAY, per_hour=30, clock=waits.clock, sleep=waits.sleep)
    allowed = [waits.slots(limiter, 1)[0] for _ in range(20) for limiter in (first, second)]
    assert all(gap < 1 for gap in gaps(allowed[:30]))  # thirty go at once, however slow the machine
    # each later one waits until the block of the message thirty before it has left the
    # hour (a block without a per-second rate lasts BLOCK_SECONDS): measured from that
    # message's moment, not from the first ask, which a busy machine makes seconds earlier
    later = [allowed[i] - allowed[i - 30] for i in range(30, 40)]
    assert all(3600 - TOL <= gap <= 3600 + BLOCK_SECONDS + 0.05 for gap in later), later


@on_postgres
def test_a_deferral_slows_every_sender_and_the_rate_recovers(engine: Engine) -> None:
    waits = Waits()
    one, other = (
        SharedRateLimiter(engine, RELAY, 40, clock=waits.clock, sleep=waits.sleep, recover_after=5)
        for _ in range(2)
    )
    before = waits.slots(one, 2)
    assert gaps(before) == [pytest.approx(1 / 40, abs=TOL)]
    waits.slots(other, 1)  # the other has a block at 40/s too
    other.deferred()
    assert other.rate == 20
    assert gaps(waits.slots(other, 3)) == [pytest.approx(1 / 20, abs=TOL)] * 2  # at once
    after = waits.slots(one, 16)  # the rest of its block, then new blocks
    assert gaps(after)[0] == pytest.approx(1 / 40, abs=TOL)  # slots already reserved
    assert gaps(after)[-5:] == [pytest.approx(1 / 20, abs=TOL)] * 5

    for _ in range(5):
        other.accepted()
    assert gaps(waits.slots(other, 6))[-3:] == [pytest.approx(1 / 22, abs=TOL)] * 3
    assert gaps(waits.slots(one, 12))[-4:] == [pytest.approx(1 / 22, abs=TOL)] * 4

    for _ in range(100):
        other.accepted()
    assert gaps(waits.slots(other, 8))[-4:] == [pytest.approx(1 / 40, abs=TOL)] * 4
    assert other.rate == 40  # never above the configured limit


def test_without_a_limit_no_database_is_used_and_a_deferral_slows_one_process() -> None:
    unreachable = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    time = FakeTime()
    limiter = SharedRateLimiter(unreachable, RELAY, clock=time.clock, sleep=time.sleep)
    for _ in range(300):  # 100 messages a second: nobody waits
        limiter.acquire()
        limiter.accepted()
        time.now += 0.01
    assert time.slept == []
    limiter.deferred()  # no shared rate to halve: this process slows to half its rate
    limiter.acquire()
    limiter.acquire()
    assert time.slept == [pytest.approx(0.02, rel=0.05)]


@on_postgres
def test_postgres_senders_share_the_whole_limit(db_settings: Settings, engine: Engine) -> None:
    settings = replace(db_settings, rate_per_second=40.0, rate_per_hour=1000)
    limiter = limiter_for(settings, engine)
    assert isinstance(limiter, SharedRateLimiter)
    assert (limiter.limit, limiter.per_hour) == (40.0, 1000)  # the whole limit, not a share
    local = limiter_for(settings, make_engine("sqlite://"))
    assert not isinstance(local, SharedRateLimiter) and local.limit == 40.0
