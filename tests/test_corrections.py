"""Corrections and retractions end to end: a source or the CLI marks a summary, everyone the
ledger shows was sent it gets one notice at the top of their next digest (or a short notice
email), exactly once, across re-runs and crashes; a retracted summary is never sent again."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from collections import Counter
from dataclasses import dataclass, replace
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import STARTER_CONFIG, Settings
from digest.edition.manage import edition_info
from digest.edition.run import run_edition
from digest.mail.transports import MemoryTransport
from digest.planning.plan import load_catalog
from digest.sources.feeds import parse_feed
from digest.sources.load import ImportOptions, ImportReport, import_summaries
from digest.store.models import Notice, NoticeDelivery, Summary
from tests.conftest import NOW, add_categories, add_reader, add_summary
from tests.test_import_cli import database_url

DAY = dt.timedelta(days=1)
A_URL = "https://example.org/research/riluzole-after-acute-injury"


class Interrupted(BaseException):
    """As if the process were killed: nothing below ``run_edition`` catches it."""


@dataclass
class DyingTransport(MemoryTransport):
    """Takes messages until the ``dies_at``-th, which it never finishes."""

    dies_at: int = 0

    def send(self, envelope, message: bytes) -> str:  # type: ignore[no-untyped-def]
        if len(self.outbox) + 1 == self.dies_at:
            raise Interrupted
        return super().send(envelope, message)


def messages(transport: MemoryTransport) -> dict[str, EmailMessage]:
    return {
        env.recipient: email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
        for env, raw in transport.outbox
    }


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def summary_id(factory: sessionmaker[Session], title: str) -> int:
    with factory() as session:
        found = session.scalar(select(Summary.id).where(Summary.title == title))
        assert found is not None
        return found


@pytest.fixture
def sent_week(factory: sessionmaker[Session], db_settings: Settings, engine: Engine) -> None:
    """Week 1 sent: pharma@ got Riluzole, neuro@ got Nerve transfers."""
    add_categories(factory, "Pharmacology", "Neurology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], NOW - 2 * DAY)
    add_reader(factory, "pharma@example.org", ["pharmacology"])
    add_reader(factory, "neuro@example.org", ["neurology"])
    first = MemoryTransport()
    report = run_edition(db_settings, first, now=NOW, engine=engine)
    assert report.sent == 2


def reimport_as_corrected(factory: sessionmaker[Session], now: dt.datetime) -> ImportReport:
    record = {
        "title": "Riluzole after acute injury",
        "url": A_URL,
        "published_at": (NOW - DAY).isoformat(),
        "categories": ["pharmacology"],
        "status": "corrected",
        "correction_note": "The trial had 112 participants, not 212.",
    }
    report = import_summaries(
        factory,
        json.dumps([record]).encode(),
        fmt="json",
        zone=dt.UTC,
        now=now,
        options=ImportOptions(),
    )
    assert not report.failed
    return report


def cli_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path, engine: Engine, *args: str
) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url(engine))
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.usefixtures("sent_week")
def test_notices_reach_the_readers_of_the_original_once(
    factory: sessionmaker[Session],
    db_settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    # corrected by re-importing the source; retracted with the CLI
    assert reimport_as_corrected(factory, NOW + DAY).updated == 1
    # the same source again: no second notice
    assert reimport_as_corrected(factory, NOW + DAY).unchanged == 1
    nerve = summary_id(factory, "Nerve transfers for hand function")
    code, output = cli_in(
        monkeypatch,
        tmp_path,
        engine,
        "summaries",
        "retract",
        str(nerve),
        "--note",
        "The journal withdrew the paper: the data could not be verified.",
    )
    assert code == 0, output
    assert "marked retracted" in output and "next digest" in output
    code, output = cli_in(monkeypatch, tmp_path, engine, "summaries", "show", str(nerve))
    assert "Status:         retracted" in output and "could not be verified" in output
    unknown = ("summaries", "retract", "9" * 40, "--note", "x")
    code, output = cli_in(monkeypatch, tmp_path, engine, *unknown)
    assert code == 1 and f"no summary with id or URL '{'9' * 40}'" in output
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Notice)) == 2

    # week 2: pharma@ has something new and the correction on top; neuro@ only the notice
    add_summary(factory, "Bladder care after injury", ["pharmacology"], NOW + 3 * DAY)
    from digest.preview.reader import preview_subscriber

    preview = preview_subscriber(db_settings, "neuro@example.org", now=NOW + 7 * DAY, engine=engine)
    assert preview.subject == "Retraction: Nerve transfers for hand function"
    week2 = MemoryTransport()
    report = run_edition(db_settings, week2, now=NOW + 7 * DAY, engine=engine)
    assert report.sent == 2
    got = messages(week2)
    pharma, neuro = got["pharma@example.org"], got["neuro@example.org"]
    assert pharma["Subject"] == "1 new summary in Pharmacology + correction"
    text = text_of(pharma)
    top = text.index("*** CORRECTION: THIS SUMMARY WAS CORRECTED ***")
    assert top < text.index("Bladder care after injury") < text.index("Read the summary")
    assert "The trial had 112 participants, not 212." in text and A_URL in text
    html = html_of(pharma)
    card = html.index("Bladder care after injury</a>")
    assert html.index("Correction: this summary was corrected") < card

    assert neuro["Subject"] == "Retraction: Nerve transfers for hand function"
    text = text_of(neuro)
    assert "*** RETRACTION: THIS STUDY WAS WITHDRAWN ***" in text
    assert "the data could not be verified" in text and "new summar" not in text
    # the same footer and headers as a digest
    assert neuro["List-Unsubscribe"] and neuro["List-Unsubscribe-Post"]
    assert "Unsubscribe:" in text and "not medical advice" in " ".join(text.lower().split())

    with factory() as session:
        info = edition_info(session, report.key)
        assert (info.notices_sent, info.notices_planned) == (2, 2)
    code, output = cli_in(monkeypatch, tmp_path, engine, "editions", "show", report.key)
    assert code == 0 and "notices: 2 sent of 2" in output

    # running week 2 again sends nothing; week 3 carries no notice
    again = MemoryTransport()
    assert run_edition(db_settings, again, now=NOW + 8 * DAY, engine=engine).sent == 0
    add_summary(factory, "Spasticity and exercise", ["pharmacology", "neurology"], NOW + 9 * DAY)
    week3 = MemoryTransport()
    run_edition(db_settings, week3, now=NOW + 14 * DAY, engine=engine)
    for msg in messages(week3).values():
        assert msg["Subject"].startswith("1 new summary in")
        assert "CORRECTION" not in text_of(msg) and "RETRACTION" not in text_of(msg)


@pytest.mark.usefixtures("sent_week")
def test_a_retracted_summary_is_never_sent_again(
    factory: sessionmaker[Session], db_settings: Settings, engine: Engine
) -> None:
    add_summary(factory, "Epidural stimulation and walking", ["neurology"], NOW + 2 * DAY)
    add_reader(factory, "late@example.org", ["neurology"], joined=NOW + 3 * DAY)
    stim = summary_id(factory, "Epidural stimulation and walking")
    add_summary(
        factory,
        "Epidural stimulation and walking",
        ["neurology"],
        NOW + 2 * DAY,
        status="retracted",
        correction_note="Withdrawn by the authors.",
    )
    with factory() as session:
        assert stim not in load_catalog(session, NOW + 7 * DAY).select(
            frozenset({1, 2}), NOW - 30 * DAY
        )
        assert session.get(Summary, stim).status == "retracted"  # type: ignore[union-attr]
    week2 = MemoryTransport()
    run_edition(db_settings, week2, now=NOW + 7 * DAY, engine=engine)
    for msg in messages(week2).values():
        assert "Epidural stimulation" not in text_of(msg)
    # nobody was sent it, so nobody is owed a notice; a stale source cannot bring it back
    add_summary(factory, "Epidural stimulation and walking", ["neurology"], NOW + 2 * DAY)
    with factory() as session:
        assert session.get(Summary, stim).status == "retracted"  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(NoticeDelivery)) == 0


def test_a_feed_item_in_category_correction_carries_the_note() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><title>Riluzole after acute injury</title><link>%s</link>
    <category>correction</category><category>Pharmacology</category>
    <description>The dose was 50 mg, not 100 mg.</description></item>
    <item><title>Nerve transfers</title><link>https://example.org/n</link>
    <category>Retraction</category><description>Withdrawn.</description></item>
    </channel></rss>""" % A_URL.encode()
    first, second = parse_feed(feed).items
    assert first.values["status"] == "corrected"
    assert first.values["correction_note"] == "The dose was 50 mg, not 100 mg."
    assert first.values["categories"] == ["Pharmacology"]
    assert "simple_explanation" not in first.values
    assert second.values["status"] == "retracted" and "categories" not in second.values


def test_a_crash_in_an_edition_carrying_notices_then_resume_sends_each_notice_once(
    factory: sessionmaker[Session], db_settings: Settings, engine: Engine
) -> None:
    add_categories(factory, "Pharmacology")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], NOW - DAY)
    readers = [f"r{i:02d}@example.org" for i in range(24)]
    for address in readers:
        add_reader(factory, address, ["pharmacology"])
    settings = replace(db_settings, send_batch_size=5)
    assert run_edition(settings, MemoryTransport(), now=NOW, engine=engine).sent == 24
    assert reimport_as_corrected(factory, NOW + DAY).updated == 1
    add_summary(factory, "Bladder care after injury", ["pharmacology"], NOW + 3 * DAY)
    add_reader(factory, "new@example.org", ["pharmacology"], joined=NOW + 2 * DAY)

    dying = DyingTransport(dies_at=13)
    with pytest.raises(Interrupted):
        run_edition(settings, dying, now=NOW + 7 * DAY, engine=engine)
    resumed = MemoryTransport()
    report = run_edition(settings, resumed, now=NOW + 7 * DAY, engine=engine)
    assert report.complete

    # each reader of the original: one correction (a resent in-flight message keeps its id)
    by_reader: dict[str, set[str]] = {}
    for env, raw in dying.outbox + resumed.outbox:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if "CORRECTION" in text_of(msg):  # type: ignore[arg-type]
            by_reader.setdefault(env.recipient, set()).add(msg["Message-ID"])
    assert sorted(by_reader) == readers
    assert all(len(ids) == 1 for ids in by_reader.values())
    with factory() as session:
        per_reader = Counter(session.scalars(select(NoticeDelivery.subscriber_id)))
        assert len(per_reader) == 24 and set(per_reader.values()) == {1}
    assert "new@example.org" in {env.recipient for env, _ in dying.outbox + resumed.outbox}

    week3 = MemoryTransport()
    run_edition(settings, week3, now=NOW + 14 * DAY, engine=engine)
    assert week3.outbox == []  # nothing new, and no notice owed any more


def test_the_site_marks_a_retracted_summary_on_the_web_version_archive_and_feed(
    tmp_path, engine: Engine, smtp_server
) -> None:
    from xml.etree import ElementTree as ET  # parses only what digest itself wrote

    from digest.sources.corrections import RETRACTED, correct
    from digest.store.db import transaction
    from digest.web.feeds import ATOM
    from tests import web_support

    site = web_support.make_site(tmp_path, engine, smtp_server)
    site.send_edition(NOW)
    (digest,) = site.received("zoe@example.org")
    web = web_support.path_of(
        web_support.link_after(web_support.text_of(digest), "View this email in your browser")
    )
    with transaction(site.factory) as session:
        nerve = session.scalar(select(Summary).where(Summary.title.like("Nerve transfers%")))
        assert nerve is not None
        correct(session, str(nerve.id), RETRACTED, "Withdrawn: data not verified.", now=NOW)
    client = site.app.test_client()
    page = client.get(web).get_data(as_text=True)
    assert "Retraction: this study was withdrawn" in page
    assert "Withdrawn: data not verified." in page
    archive = client.get("/archive/neurology").get_data(as_text=True)
    assert "Retracted:</strong>" in archive and "Withdrawn: data not verified." in archive
    feed = ET.fromstring(client.get("/feeds/neurology.atom").data)  # noqa: S314
    (entry,) = [
        e
        for e in feed.findall(f"{{{ATOM}}}entry")
        if "Nerve transfers" in (e.findtext(f"{{{ATOM}}}title") or "")
    ]
    assert (entry.findtext(f"{{{ATOM}}}title") or "").startswith("Retracted: ")
    assert entry.find(f"{{{ATOM}}}category").get("term") == "retraction"  # type: ignore[union-attr]
    assert "Withdrawn: data not verified." in (entry.findtext(f"{{{ATOM}}}summary") or "")


def test_a_notice_renders_valid_mjml_in_both_parts(settings: Settings) -> None:
    from digest.edition.build import personal_links
    from digest.render import mjml_lint
    from digest.render.cards import CategoryRef, Notice, build_content
    from digest.render.renderer import DIGEST_MJML, Renderer

    renderer = Renderer(settings)
    notice = Notice("retracted", "Nerve transfers & hand function", "https://e.org/n", "Withdrawn.")
    content = build_content(
        [], [1], {}, [CategoryRef(1, "neurology", "Neurology")], 15, notices=[notice]
    )
    links = personal_links(renderer.identity, "t" * 43, "w" * 32)
    rendered = renderer.render_digest(content, links)
    assert rendered.subject == "Retraction: Nerve transfers & hand function"
    assert "Nerve transfers &amp; hand function" in rendered.html
    assert rendered.text.count("Withdrawn.") == 1 and "In this issue" not in rendered.text
    source = renderer.render_mjml(content, links)
    template = (renderer.templates_dir / DIGEST_MJML).read_text(encoding="utf-8")
    result = mjml_lint.validate(source, renderer.templates_dir / DIGEST_MJML, template)
    assert result.status == "passed" or mjml_lint.find_validator()[0] is None, result


def test_csv_and_json_lines_carry_status_and_note_and_refuse_an_unknown_status() -> None:
    from digest.sources import parse_source
    from digest.sources.validate import check

    csv = (
        b"title,url,published_at,categories,status,correction_note\n"
        b"A,https://e.org/a,2026-11-20,neurology,Retracted,Withdrawn.\n"
        b"B,https://e.org/b,2026-11-20,neurology,withdrawn,\n"
    )
    checked = check(parse_source(csv, "auto"), zone=dt.UTC, now=NOW)
    (valid,) = checked.records
    assert valid.record.fields["status"] == "retracted"
    assert valid.record.fields["correction_note"] == "Withdrawn."
    (reject,) = checked.rejects
    assert reject.message == (
        "status must be one of published, corrected, retracted, got 'withdrawn'"
    )
    line = (
        b'{"title": "C", "url": "https://e.org/c", "status": "corrected", "correction_note": "x"}'
    )
    checked = check(
        parse_source(line + b"\n" + line.replace(b"/c", b"/d"), "jsonl"), zone=dt.UTC, now=NOW
    )
    assert [r.record.fields["status"] for r in checked.records] == ["corrected", "corrected"]
