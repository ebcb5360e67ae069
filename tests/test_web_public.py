"""Pages without personal data: the web version of a sent digest, the "email me my link"
page it points to, the archive per topic and the Atom feeds."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from xml.etree import ElementTree as ET  # parses only what digest itself wrote

import pytest
from sqlalchemy import Engine

from digest.web.feeds import ATOM, FeedItem, atom_feed, group_by_edition
from tests.conftest import NOW, SmtpServer, add_summary
from tests.web_support import DAY, Site, link_after, make_site, path_of, text_of

A = f"{{{ATOM}}}"


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    site = make_site(tmp_path, engine, smtp_server)
    site.send_edition(NOW)
    return site


def test_web_version_of_a_sent_digest_has_no_personal_data(site: Site) -> None:
    (digest,) = site.received("zoe@example.org")
    text = text_of(digest)
    web = path_of(link_after(text, "View this email in your browser"))
    assert re.fullmatch(r"/v/[a-z2-7]{39}", web)
    client = site.app.test_client(use_cookies=False)
    answer = client.get(web)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "Riluzole after acute injury" in page and "Nerve transfers" in page
    zoe = site.subscriber("zoe@example.org")
    assert zoe.token not in page and "zoe@example.org" not in page and "Zoë" not in page
    assert "https://example.org/digest/unsubscribe" in page
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    sams = path_of(link_after(text_of(site.received("sam@example.org")[0]), "View this email"))
    assert sams != web  # each variant has its own page
    assert client.get("/v/" + "q" * 32).status_code == 404


def test_link_request_mails_the_readers_own_links_and_answers_the_same(site: Site) -> None:
    client = site.app.test_client(use_cookies=False)
    stamp = re.search(r'name="stamp" value="([^"]+)"', client.get("/unsubscribe").get_data(True))
    assert stamp is not None

    def ask(address: str) -> bytes:
        answer = client.post("/unsubscribe", data={"email": address, "stamp": stamp.group(1)})
        assert answer.status_code == 200
        return re.sub(rb'nonce="[^"]+"', b"", answer.data)

    assert ask("ZOE@example.org") == ask("nobody@example.org")
    assert site.received("nobody@example.org") == []
    links = site.received("zoe@example.org")[-1]
    assert links["Subject"].startswith("Your links")
    unsubscribe = path_of(link_after(text_of(links), "Unsubscribe:"))
    assert unsubscribe == f"/u/{site.subscriber('zoe@example.org').token}"
    assert b"Unsubscribe from all emails" in client.get(unsubscribe).data


def test_archive_and_feed(site: Site) -> None:
    add_summary(site.factory, "Tom & Jerry's <b>bold</b> study", ["neurology"], NOW - 2 * DAY)
    client = site.app.test_client()
    index = client.get("/archive").get_data(as_text=True)
    assert "/archive/neurology" in index and "/feeds/neurology.atom" in index
    page = client.get("/archive/neurology").get_data(as_text=True)
    assert "Week of 23 November 2026" in page and "Nerve transfers for hand function" in page
    assert "2026-W48" not in page.replace("/editions/2026-W48/", "")  # no ISO week for people
    # per item: its journal, the day it was published and its topics
    assert "Journal of Neurotrauma · 21 November 2026 · Neurology" in page
    assert 'href="/editions/2026-W48/neurology"' in page
    assert "Tom &amp; Jerry&#39;s &lt;b&gt;bold&lt;/b&gt; study" in page
    assert client.get("/archive/nope").status_code == 404

    answer = client.get("/feeds/neurology.atom")
    assert answer.mimetype == "application/atom+xml"
    feed = ET.fromstring(answer.data)  # noqa: S314 - our own feed
    assert feed.tag == f"{A}feed"
    for required in ("id", "title", "updated", "author"):
        assert feed.find(f"{A}{required}") is not None
    titles = [e.findtext(f"{A}title") for e in feed.findall(f"{A}entry")]
    assert "Tom & Jerry's <b>bold</b> study" in titles  # escaped in XML, exact once parsed
    assert "Riluzole after acute injury" not in titles  # another topic
    for entry in feed.findall(f"{A}entry"):
        for required in ("id", "title", "updated", "link", "summary"):
            assert entry.find(f"{A}{required}") is not None
    assert client.get("/feeds/nope.atom").status_code == 404


def test_atom_drops_characters_xml_cannot_carry() -> None:
    moment = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    item = FeedItem(1, "Bell\x07 & <ring>", "https://example.org/r/1?a=1&b=2", moment, moment, "")
    feed = ET.fromstring(  # noqa: S314 - our own feed
        atom_feed(
            feed_url="https://example.org/f.atom",
            site_url="https://example.org",
            title="T",
            author="A",
            items=[item],
            updated=moment,
        )
    )
    entry = feed.find(f"{A}entry")
    assert entry is not None
    assert entry.findtext(f"{A}title") == "Bell & <ring>"
    assert entry.findtext(f"{A}id") == "https://example.org/r/1?a=1&b=2"


def test_group_by_edition() -> None:
    week = dt.timedelta(weeks=1)
    one, two = NOW, NOW + week

    def item(n: int, at: dt.datetime) -> FeedItem:
        return FeedItem(n, f"t{n}", f"https://example.org/{n}", at, at, "")

    items = [item(1, NOW - DAY), item(2, NOW + DAY), item(3, NOW - 9 * DAY)]
    grouped = group_by_edition([("W48", one), ("W49", two)], items)
    assert [(e.key, [i.id for i in e.items]) for e in grouped] == [("W49", [2]), ("W48", [1])]
