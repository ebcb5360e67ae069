"""The admin console's list and health pages through Flask's test client, on a list with a
history (tests.admin_pages_support.seed): an address only after a search for it, the
charts drawn on the server with no script, their tables and CSV files the same numbers,
the bulk-sender thresholds drawn."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from tests.admin_pages_support import W48, admin_app, console_client, seed

ADDRESSES = (
    "zoe@example.org", "sam@example.org", "ann@example.com", "pending@example.org",
    "gone@example.org", "new1@example.org", "new2@example.org", "bounced@example.net",
)  # fmt: skip


@pytest.fixture
def app(settings: Settings, factory: sessionmaker[Session], tmp_path: Path) -> Flask:
    seed(factory, tmp_path)
    app = admin_app(settings, factory, lambda: W48)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return console_client(app)


def post(client: FlaskClient, app: Flask, path: str, **form: str) -> tuple[int, str]:
    answer = client.post(path, data={"csrf_token": app.extensions["admin_csrf"], **form})
    return answer.status_code, answer.get_data(as_text=True)


def addresses_in(page: str) -> set[str]:
    return {address for address in ADDRESSES if address in page}


class Tables(HTMLParser):
    """Every table's caption, header cells and body rows, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, object]] = []
        self.cell: list[str] | None = None
        self.row: list[str] = []
        self.scopes: list[str | None] = []
        self.part = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append({"caption": "", "header": [], "rows": [], "scopes": []})
        elif tag in ("thead", "tbody", "caption"):
            self.part = tag
            if tag == "caption":
                self.cell = []
        elif tag == "tr":
            self.row = []
        elif tag in ("th", "td"):
            self.cell = []
            self.tables[-1]["scopes"].append((tag, dict(attrs).get("scope")))  # type: ignore[attr-defined]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "caption" and self.cell is not None:
            self.tables[-1]["caption"] = " ".join("".join(self.cell).split())
            self.cell = None
        elif tag == "tr":
            key = "header" if self.part == "thead" else "rows"
            if key == "header":
                self.tables[-1]["header"] = self.row
            else:
                self.tables[-1]["rows"].append(self.row)  # type: ignore[attr-defined]

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables_of(page: str) -> list[dict[str, object]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_no_page_lists_addresses_until_one_is_searched(client: FlaskClient, app: Flask) -> None:
    for path in ("/admin/list/", "/admin/health/", "/admin/health/topics",
                 "/admin/health/editions", "/admin/health/speed", "/admin/health/topics.csv",
                 "/admin/health/editions.csv", "/admin/health/speed.csv"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert addresses_in(answer.get_data(as_text=True)) == set(), path
    overview = client.get("/admin/list/").get_data(as_text=True)
    # what the list does show: counts per status and topic, suppressions, the import
    tables = {t["caption"]: t for t in tables_of(overview)}
    assert ["active", "2"] in tables["Subscribers by status"]["rows"]  # type: ignore[operator]
    assert tables["Subscribers per topic"]["rows"] == [["Neurology", "2", "2"],
                                                       ["Pharmacology", "1", "1"]]  # fmt: skip
    assert tables["Addresses on the suppression list, by reason"]["rows"] == [["erased", "1"]]
    (imported,) = next(t for c, t in tables.items() if str(c).startswith("The latest CSV"))["rows"]  # type: ignore[misc]
    assert imported[1:] == ["spring-fair.csv", "4", "2 (2 pending)", "0", "1", "0", "0", "1"]

    status, page = post(client, app, "/admin/list/search", address="Zoe@example.org")
    assert status == 200
    assert addresses_in(page) == {"zoe@example.org"}
    captions = [t["caption"] for t in tables_of(page)]
    assert "Consent record of zoe@example.org" in captions
    deliveries = next(t for t in tables_of(page) if t["caption"].startswith("Deliveries"))  # type: ignore[union-attr]
    assert [row[:2] for row in deliveries["rows"]] == [["2026-W48", "sent"], ["2026-W47", "sent"]]  # type: ignore[union-attr]
    events = next(t for t in tables_of(page) if t["caption"].startswith("Bounces"))  # type: ignore[union-attr]
    assert events["rows"][0][1:4] == ["soft", "5.1.1", "2026-W47"]  # type: ignore[index]
    assert "Neurology, Pharmacology" in page

    status, page = post(client, app, "/admin/list/search", address="new1")
    assert status == 200 and addresses_in(page) == {"new1@example.org"}


def test_short_or_odd_searches_are_refused_with_a_reason(client: FlaskClient, app: Flask) -> None:
    for typed, why in (("zoe", "at least 4 characters"), ("", "type an address"),
                       ("a b@c.d", "no spaces")):  # fmt: skip
        status, page = post(client, app, "/admin/list/search", address=typed)
        assert status == 400 and why in page
        assert addresses_in(page) == set()
    # what was typed comes back escaped
    status, page = post(client, app, "/admin/list/search", address="<b>zoe</b>@example.org")
    assert status == 200 and "&lt;b&gt;zoe&lt;/b&gt;@example.org" in page and "<b>zoe" not in page
    status, page = post(client, app, "/admin/list/search", address="%@%")
    assert status == 200 and "Nobody found" in page and addresses_in(page) == set()


def test_search_answers_are_never_cached_and_need_the_csrf_token(
    client: FlaskClient, app: Flask
) -> None:
    answer = client.post("/admin/list/search", data={"address": "zoe@example.org"})
    assert answer.status_code == 400
    assert "zoe@example.org" not in answer.get_data(as_text=True)
    answer = client.post(
        "/admin/list/search",
        data={"address": "zoe@example.org", "csrf_token": app.extensions["admin_csrf"]},
    )
    assert answer.headers["Cache-Control"] == "no-store"
    assert client.get("/admin/list/search").status_code == 405  # GET never searches


def test_the_suppression_list_is_searched_by_whole_address(client: FlaskClient, app: Flask) -> None:
    status, page = post(client, app, "/admin/list/suppressed", address="bounced@example.net")
    assert status == 200
    assert "bounced@example.net is on the suppression list (erased) since 2026-11-19" in page
    status, page = post(client, app, "/admin/list/suppressed", address="zoe@example.org")
    assert "zoe@example.org is not on the suppression list." in page
    status, page = post(client, app, "/admin/list/suppressed", address="bounced")
    assert status == 400 and "whole address" in page


@pytest.mark.parametrize("name", ["topics", "editions", "speed"])
def test_each_chart_is_svg_without_script_with_its_table_and_csv(
    client: FlaskClient, name: str
) -> None:
    answer = client.get(f"/admin/health/{name}")
    page = answer.get_data(as_text=True)
    nonce = re.search(r"style-src 'nonce-([^']+)'", answer.headers["Content-Security-Policy"])
    assert nonce is not None
    assert "<script" not in page and "javascript:" not in page
    assert page.count('<svg role="img"') >= 1
    # every style element (the page's and the charts') carries the nonce; no style attribute
    assert re.findall(r"<style\b[^>]*>", page) and all(
        f'nonce="{nonce.group(1)}"' in tag for tag in re.findall(r"<style\b[^>]*>", page)
    )
    assert not re.search(r"<[^>]+\sstyle=", page)
    (table,) = tables_of(page)
    assert table["caption"] and table["rows"]
    scopes = set(table["scopes"])  # type: ignore[arg-type]
    assert ("th", "col") in scopes and ("th", "row") in scopes
    assert {scope for tag, scope in scopes if tag == "th"} <= {"col", "row"}
    assert f'href="/admin/health/{name}.csv"' in page

    download = client.get(f"/admin/health/{name}.csv")
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="digest-{name}-2026-11-23.csv"'
    )
    header, *rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert header == table["header"] and rows == table["rows"]


def test_the_editions_page_draws_the_bulk_sender_thresholds(client: FlaskClient) -> None:
    page = client.get("/admin/health/editions").get_data(as_text=True)
    complaints = page[page.index("Complaints per edition") :]
    complaints = complaints[: complaints.index("</svg>")]
    # both limits are series 1 and 2 of the complaints chart, drawn dashed; the
    # complaints themselves (series 0) a solid line
    legend = re.findall(r"<text[^>]*>([^<]+)</text></g>", complaints)
    assert legend[-3:] == [
        "Complaints", "Gmail&#x27;s target: under 0.1%", "Gmail and Yahoo&#x27;s limit: 0.3%",
    ] or legend[-3:] == [
        "Complaints", "Gmail's target: under 0.1%", "Gmail and Yahoo's limit: 0.3%",
    ]  # fmt: skip
    dashed = re.findall(r"\.series\.serie-(\d)\{[^}]*stroke-dasharray:10,6\}", complaints)
    assert dashed == ["1", "2"]
    lines = {
        int(n): [tuple(map(float, point.split())) for point in d[1:].split(" L")]
        for n, d in re.findall(r'<g class="series serie-(\d) [^"]*"><path d="([^"]+)"', complaints)
    }
    (_, target), (_, target_end) = lines[1]
    (_, limit), (_, limit_end) = lines[2]
    (_, w47), (_, w48) = lines[0]
    assert target == target_end and limit == limit_end  # straight across every edition
    # W47's 2 complaints in 1001 (0.20 %) lie halfway between the lines (0.10 % and
    # 0.30 %: the y axis runs downwards), W48's 1 in 4 far above the limit
    assert limit < w47 < target and w47 == pytest.approx((target + limit) / 2, abs=0.5)
    assert w48 < limit
    (table,) = tables_of(page)
    rows = {row[0]: dict(zip(table["header"], row, strict=True)) for row in table["rows"]}  # type: ignore[arg-type, union-attr]
    assert (
        rows["2026-W47"]["Complaint %"] == "0.200" and rows["2026-W48"]["Complaint %"] == "25.000"
    )


def test_unknown_chart_is_not_found(client: FlaskClient) -> None:
    assert client.get("/admin/health/opens").status_code == 404
    assert client.get("/admin/health/opens.csv").status_code == 404
