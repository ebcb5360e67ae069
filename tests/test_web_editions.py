"""The edition pages a digest links to (every summary of the edition, also those past the
card cap, with the card's facts), the date of each digest, and the validators of the
public pages and feeds (ETag, Last-Modified, 304 Not Modified, Cache-Control)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from xml.etree import ElementTree as ET  # parses only what digest itself wrote

import pytest
from sqlalchemy import Engine

from digest.sources.load import SummaryRecord
from digest.sources.store import upsert_summary
from digest.store.db import transaction
from digest.web.feeds import ATOM
from tests.conftest import NOW, SmtpServer, add_summary
from tests.web_support import DAY, Site, html_of, link_after, make_site, path_of, text_of

A = f"{{{ATOM}}}"
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    """This week's edition sent with room for two cards: Zoë's digest (Pharmacology and
    Neurology, four new summaries) shows one of each topic and links to the rest."""
    site = make_site(tmp_path, engine, smtp_server, card_cap="2")
    add_summary(
        site.factory,
        "Baclofen pump outcomes",
        ["pharmacology"],
        NOW - 4 * DAY,
        doi="10.1000/bp.1",
        pmid="31415926",
        study_type="Pilot study",
        sample_size=11,
        limitations=["Only 11 people took part, with no comparison group."],
    )
    add_summary(site.factory, "Stem cells for chronic injury", ["neurology"], NOW - 5 * DAY)
    site.send_edition(NOW)
    add_summary(site.factory, "Next week's news", ["pharmacology"], NOW + DAY)
    return site


def more_link(text: str, topic: str) -> str:
    found = re.search(rf"\d+ more in {topic}: (\S+)", text)
    assert found is not None, text
    return found.group(1)


def test_a_digest_is_dated_and_its_hidden_summaries_are_one_link_away(site: Site) -> None:
    (digest,) = site.received("zoe@example.org")
    text = text_of(digest)
    assert "Week of 23 November 2026" in text
    assert "Week of 23 November 2026" in html_of(digest)
    link = more_link(text, "Pharmacology")
    assert link == "https://example.org/digest/editions/2026-W48/pharmacology"
    assert f'href="{link}"' in html_of(digest)  # the HTML part leads to the same page
    assert "Baclofen pump outcomes" not in text  # past the cap...

    client = site.app.test_client(use_cookies=False)
    answer = client.get(path_of(link))
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "<h1>Pharmacology: week of 23 November 2026</h1>" in page
    for title in ("Baclofen pump outcomes", "Riluzole after acute injury"):  # ...but here
        assert title in page
    assert "Nerve transfers" not in page and "Next week&#39;s news" not in page
    # the same truthful facts as the email's cards
    assert "Early-stage evidence:</strong> pilot study" in page
    assert "Keep in mind:</strong> Only 11 people took part, with no comparison group." in page
    assert 'href="https://doi.org/10.1000/bp.1"' in page
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/31415926/"' in page
    assert "Journal of Neurotrauma, 2026 · Summary published 19 November 2026" in page

    web = path_of(link_after(text, "View this email in your browser"))
    version = client.get(web).get_data(as_text=True)
    assert "https://example.org/digest/editions/2026-W48/neurology" in version
    assert "Week of 23 November 2026" in version


def test_the_edition_page_lists_every_summary_by_topic(site: Site) -> None:
    client = site.app.test_client(use_cookies=False)
    answer = client.get("/editions/2026-W48")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "<h1>Week of 23 November 2026</h1>" in page
    assert "5 new research summaries" in page
    for title in (
        "Riluzole after acute injury",
        "Baclofen pump outcomes",
        "Nerve transfers for hand function",
        "Stem cells for chronic injury",
        "Robotic gait training at home",  # Sam's
    ):
        assert page.count(f">{title}</a>") == 1, title
    assert "Next week" not in page  # published after the cutoff
    assert 'href="/editions/2026-W48/pharmacology">Pharmacology: 2 new</a>' in page
    section = page[page.index(">Pharmacology</h2>") :]
    section = section[: section.index("</section>")]
    assert ">Baclofen pump outcomes<" in section and ">Nerve transfers" not in section
    assert "Not medical advice" in page

    index = client.get("/archive").get_data(as_text=True)
    assert '<a href="/editions/2026-W48">Week of 23 November 2026</a>' in index


@pytest.mark.parametrize(
    "path",
    [
        "/editions/2026-W47",  # no such edition
        "/editions/2026-W49",
        "/editions/W48",  # malformed
        "/editions/2026-W48%00",
        "/editions/2026-W48/nope",  # no such topic
        "/editions/2026-W48/Not%20a%20slug",
        "/editions/2026-W47/neurology",
    ],
)
def test_unknown_editions_and_topics_get_the_404_page(site: Site, path: str) -> None:
    answer = site.app.test_client(use_cookies=False).get(path)
    assert answer.status_code == 404
    assert "This link does not work" in answer.get_data(as_text=True)


def test_an_edition_page_waits_for_its_cutoff(site: Site) -> None:
    """Replaying an earlier moment (the clock of ``DIGEST_NOW``) hides later editions."""
    site.clock[0] = NOW - HOUR
    assert site.app.test_client().get("/editions/2026-W48").status_code == 404


def test_feeds_date_entries_by_the_summary_and_answer_304(site: Site) -> None:
    late = SummaryRecord(
        title="Imported a week late",
        url="https://example.org/research/late",
        published_at=NOW - 3 * DAY,
        categories=("neurology",),
        fields={"journal": "Spinal Cord", "simple_explanation": "Late."},
    )
    with transaction(site.factory) as session:
        upsert_summary(session, late, now=NOW + 4 * DAY)  # imported after it was published
    site.clock[0] = NOW + 5 * DAY
    client = site.app.test_client(use_cookies=False)
    answer = client.get("/feeds/neurology.atom")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "public, max-age=3600"
    etag, modified = answer.headers["ETag"], answer.headers["Last-Modified"]

    def updated_of(data: bytes, title: str) -> str | None:
        feed = ET.fromstring(data)  # noqa: S314 - our own feed
        (entry,) = [e for e in feed.findall(f"{A}entry") if e.findtext(f"{A}title") == title]
        return entry.findtext(f"{A}updated")

    assert updated_of(answer.data, "Imported a week late") == "2026-11-20T08:00:00Z"
    assert updated_of(answer.data, "Nerve transfers for hand function") == "2026-11-21T08:00:00Z"
    assert modified == "Sat, 21 Nov 2026 08:00:00 GMT"  # the newest entry, not the import

    again = client.get("/feeds/neurology.atom", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    since = client.get("/feeds/neurology.atom", headers={"If-Modified-Since": modified})
    assert since.status_code == 304

    changed = SummaryRecord(**{**late.__dict__, "fields": {**late.fields, "year": 2025}})
    with transaction(site.factory) as session:  # a correction of what the summary says
        upsert_summary(session, changed, now=NOW + 5 * DAY)
    fresh = client.get("/feeds/neurology.atom", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert updated_of(fresh.data, "Imported a week late") == "2026-11-28T08:00:00Z"
    later = client.get("/feeds/neurology.atom", headers={"If-Modified-Since": modified})
    assert later.status_code == 200


@pytest.mark.parametrize(
    "path", ["/archive", "/archive/neurology", "/editions/2026-W48", "/editions/2026-W48/neurology"]
)
def test_public_pages_answer_304_with_the_same_nonce(site: Site, path: str) -> None:
    """A kept copy must still fit the page's Content-Security-Policy: the style nonce of a
    cacheable page is the same on every answer."""
    client = site.app.test_client(use_cookies=False)
    first = client.get(path)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    nonce = re.search(r'<style nonce="([^"]+)"', first.get_data(as_text=True))
    policy = first.headers["Content-Security-Policy"]
    assert nonce is not None and f"'nonce-{nonce.group(1)}'" in policy
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    assert client.get(path).get_data() == first.get_data()


def test_a_web_version_answers_304_with_its_own_policy(site: Site) -> None:
    (digest,) = site.received("zoe@example.org")
    web = path_of(link_after(text_of(digest), "View this email in your browser"))
    client = site.app.test_client(use_cookies=False)
    first = client.get(web)
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    again = client.get(web, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    assert "sandbox" in again.headers["Content-Security-Policy"]
