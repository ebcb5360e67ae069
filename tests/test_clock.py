"""DIGEST_NOW: every command can run as if it were another moment (tests, replays)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from digest import clock
from digest.bounces import webhook
from digest.cli import schedule as scheduler
from digest.config import Settings
from digest.errors import SetupError
from digest.planning.when import Schedule
from digest.web import create_app
from digest.web.state import EXTENSION, WebApp
from subscribers.models import Consent

#: Monday 30 November 2026 (ISO week 2026-W49) and the Monday after it (2026-W50).
THIS_MONDAY = "2026-11-30T09:00:00+00:00"
NEXT_MONDAY = "2026-12-07T09:00:00+00:00"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


def run(*args: str, now: str | None = None) -> Result:
    from digest.cli.main import cli

    env = {clock.VARIABLE: now} if now else {}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T08:00:00+00:00", dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)),
        ("2026-12-07T09:00+01:00", dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)),
        ("2026-12-07T08:00:00Z", dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)),
        (" 2026-12-07 08:00:00+00:00 ", dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)),
    ],
)
def test_digest_now_takes_iso_8601_times_with_an_offset(text: str, expected: dt.datetime) -> None:
    assert clock.parse_now(text) == expected
    assert clock.now({"DIGEST_NOW": text}) == expected


@pytest.mark.parametrize("text", ["2026-12-07", "2026-12-07T08:00", "next monday", "1764000000"])
def test_a_bad_digest_now_is_one_line_naming_it_and_the_form(text: str) -> None:
    with pytest.raises(SetupError) as raised:
        clock.parse_now(text)
    assert str(raised.value) == (
        f"DIGEST_NOW is {text!r}: expected an ISO 8601 time with its offset, "
        "such as 2026-12-07T08:00:00+00:00"
    )


def test_without_digest_now_the_clock_is_real() -> None:
    before = dt.datetime.now(dt.UTC)
    assert before <= clock.now({}) <= dt.datetime.now(dt.UTC)
    assert clock.running_clock({"DIGEST_NOW": " "}) is clock.real_now


def test_a_running_clock_starts_at_digest_now_and_runs_on() -> None:
    seconds = [100.0]
    ticking = clock.running_clock({"DIGEST_NOW": NEXT_MONDAY}, monotonic=lambda: seconds[0])
    assert ticking() == dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
    seconds[0] = 190.0
    assert ticking() == dt.datetime(2026, 12, 7, 9, 1, 30, tzinfo=dt.UTC)


def test_every_command_refuses_a_bad_digest_now_with_exit_status_1(folder: Path) -> None:
    for args in (["editions", "list"], ["send", "--dry-run"], ["demo"]):
        result = run(*args, now="tomorrow")
        assert result.exit_code == 1
        assert result.output == (
            "Error: DIGEST_NOW is 'tomorrow': expected an ISO 8601 time with its offset, "
            "such as 2026-12-07T08:00:00+00:00\n"
        )
    assert not (folder / "digest.toml").exists()  # refused before doing anything


def _new_summary(folder: Path) -> Path:
    """One summary published in the week of NEXT_MONDAY's edition (after this week's cutoff)."""
    item = {
        "title": "Walking practice with a robotic exoskeleton",
        "url": "https://example.org/research/exoskeleton-walking",
        "published_at": "2026-12-03T10:00:00+00:00",
        "categories": ["Pharmacology"],
        "journal": "Spinal Cord",
        "simple_explanation": "People practised walking with a robotic frame for ten weeks.",
    }
    path = folder / "new.json"
    path.write_text(json.dumps({"items": [item]}), encoding="utf-8")
    return path


def test_next_mondays_edition_can_be_previewed_and_sent_today(folder: Path) -> None:
    first = run("demo", now=THIS_MONDAY)
    assert first.exit_code == 0, first.output
    assert "Edition 2026-W49: sent 24 via file into outbox/2026-W49" in first.output
    imported = run("summaries", "import", str(_new_summary(folder)), now=NEXT_MONDAY)
    assert imported.exit_code == 0, imported.output

    preview = run("preview", "--categories", "pharmacology", "--out", "look", now=NEXT_MONDAY)
    assert preview.exit_code == 0, preview.output
    assert "1 summaries since 2026-11-30 09:00 UTC" in preview.output
    assert "1 new summary in Pharmacology" in preview.output
    html = (folder / "look" / "pharmacology.html").read_text(encoding="utf-8")
    assert "Walking practice with a robotic exoskeleton" in html

    shown_before = run("editions", "show", now=NEXT_MONDAY)  # next week's, not this week's
    assert shown_before.exit_code == 1
    assert shown_before.output == "Error: no edition 2026-W50 (see `digest editions list`)\n"

    sent = run("send", now=NEXT_MONDAY)
    assert sent.exit_code == 0, sent.output
    assert "Edition 2026-W50: sent" in sent.output
    emls = sorted((folder / "outbox" / "2026-W50").glob("*.eml"))
    assert emls
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg["Date"] == "Mon, 07 Dec 2026 09:00:00 +0000"
    assert "Walking practice with a robotic exoskeleton" in msg.get_body(("plain",)).get_content()

    shown = run("editions", "show", now=NEXT_MONDAY)
    assert shown.output.startswith("Edition 2026-W50: complete\n")
    assert "created   2026-12-07 09:00 UTC" in shown.output
    assert "cutoff    2026-12-07 09:00 UTC" in shown.output
    assert "completed 2026-12-07 09:0" in shown.output  # on the set clock, not the real one
    again = run("send", now=NEXT_MONDAY)
    assert "Nothing new to send for edition 2026-W50" in again.output


def test_send_due_asks_the_set_clock_whether_the_send_time_has_come(folder: Path) -> None:
    assert run("demo", now=THIS_MONDAY).exit_code == 0
    early = run("send", "--due", now="2026-12-07T07:59:00+00:00")
    assert early.output.startswith("Nothing to do:"), early.output
    assert not (folder / "outbox" / "2026-W50").exists()
    due = run("send", "--due", now="2026-12-07T08:00:00+00:00")
    assert due.exit_code == 0, due.output
    assert "2026-W50" in due.output


def test_subscribers_consent_is_recorded_at_the_set_time(folder: Path) -> None:
    assert run("demo", now=THIS_MONDAY).exit_code == 0
    added = run(
        "subscribers", "add", "zoe@example.org", "-c", "pharmacology", "--confirmed",
        now=NEXT_MONDAY,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = run("subscribers", "show", "zoe@example.org", now=NEXT_MONDAY)
    assert "added:       2026-12-07 09:00 UTC" in shown.output
    assert "active since 2026-12-07 09:00 UTC" in shown.output


def test_the_web_clock_starts_at_digest_now(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_NOW", NEXT_MONDAY)
    settings = replace(settings, bounce_webhook_secret="s" * 16)
    app = create_app(settings, engine)
    web = app.extensions[EXTENSION]
    assert isinstance(web, WebApp)
    started = web.now()
    assert dt.timedelta(0) <= started - clock.parse_now(NEXT_MONDAY) < dt.timedelta(minutes=1)
    webhooks = app.extensions[webhook.EXTENSION]  # bounces it takes are dated on that clock
    assert dt.timedelta(0) <= webhooks.now() - started < dt.timedelta(minutes=1)
    monkeypatch.setenv("DIGEST_NOW", "soon")
    with pytest.raises(SetupError, match="DIGEST_NOW is 'soon'"):
        create_app(settings, engine)
    with web.factory() as session:  # nothing was written by the refused app
        assert session.scalars(select(Consent)).first() is None


def test_the_scheduler_logs_the_next_run_by_the_set_clock(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DIGEST_NOW", "2026-12-06T12:00:00+00:00")
    monkeypatch.setattr(scheduler, "_clock", clock.running_clock())
    with caplog.at_level(logging.INFO, logger="digest.scheduler"):
        scheduler._log_shifted_clock(Schedule.from_settings(settings))
    assert "DIGEST_NOW is set: runs take 2026-12-06T12:00:00" in caplog.text
    assert "the next edition run is at 2026-12-07T08:00:00+00:00" in caplog.text
