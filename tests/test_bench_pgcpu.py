"""The send benchmark's reading of the PostgreSQL server's CPU (benchmarks/pgcpu.py): a
query that keeps a backend busy shows up, also once that backend has left (its last figure
is kept), and an idle one adds nothing."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import text

from benchmarks.pgcpu import ServerCpu, process_cpu, steady_rate
from digest.store.db import make_engine
from tests.conftest import PG_URL

BUSY = "SELECT count(*) FROM generate_series(1, 4000000) AS n WHERE n % 7 = 3"


def test_a_processs_cpu_is_read_from_proc() -> None:
    assert process_cpu(os.getpid()) is not None
    assert process_cpu(2**22 + 17) is None  # no such process


def test_the_steady_rate_is_taken_between_a_fifth_and_four_fifths() -> None:
    samples = [(0.0, 0), (1.0, 0), (2.0, 20), (3.0, 50), (4.0, 80), (5.0, 100), (9.0, 100)]
    assert steady_rate(samples, 100) == pytest.approx(30.0)
    assert steady_rate(samples[:3], 100) == 0.0  # never reached four fifths


@pytest.mark.postgres
def test_a_busy_backend_counts_after_it_left() -> None:
    if PG_URL is None:
        pytest.skip("PostgreSQL tests need DIGEST_TEST_DATABASE_URL (set by .ci/run)")
    engine = make_engine(PG_URL)
    with engine.connect() as idle, ServerCpu(PG_URL, interval=0.05) as quiet:
        idle.execute(text("SELECT 1"))
        time.sleep(0.3)
    assert quiet.stop() < 0.05
    with ServerCpu(PG_URL, interval=0.05) as server:
        with engine.connect() as busy:
            started = time.process_time()
            busy.execute(text(BUSY))
            time.sleep(0.2)  # polled while still connected
        engine.dispose()  # the backend exits
    counted = server.stop()
    assert counted > 0.1
    assert time.process_time() - started < counted  # the work was the server's, not ours
    assert server.backends >= 1
