"""The admin console's "The list" (Blueprint ``people``, nested under the console at
``/admin/list``): counts per status and topic, the suppression list's counts, recent
imports, and one subscriber at a time found by address.

No page lists addresses: one is shown only as the answer to a search for it
(:func:`digest.reports.people.parse_query`: the whole address, or a prefix of at least
4 characters, at most 10 people). Searches are POSTed forms (with the console's CSRF
token), so an address never sits in a URL, where access logs, browser history and
``Referer`` headers would keep it; their answers are never cached."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request

from digest.reports import people as report
from digest.web.state import current_web

bp = Blueprint("people", __name__)

Page = str | tuple[str, int]


@bp.after_request
def never_cached(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def overview(**values: Any) -> dict[str, Any]:
    """What every page of the list shows: counts, never an address."""
    with current_web().factory() as session:
        return {
            "statuses": report.status_counts(session),
            "topics": report.topic_counts(session),
            "suppressions": report.suppression_counts(session),
            "imports": report.recent_imports(session),
            "min_prefix": report.MIN_PREFIX,
            "max_found": report.MAX_FOUND,
            **values,
        }


@bp.get("/")
def index() -> Page:
    return render_template("admin/people/index.html", **overview())


@bp.post("/search")
def search() -> Page:
    """The subscribers whose address is, or starts with, the one typed."""
    typed = request.form.get("address", "")[: report.MAX_QUERY + 1]
    try:
        query = report.parse_query(typed)
    except report.SearchRefused as exc:
        page = render_template("admin/people/index.html", **overview(search_error=str(exc)))
        return page, 400
    with current_web().factory() as session:
        found = report.find(session, query)
    return render_template("admin/people/index.html", **overview(found=found, typed=typed))


@bp.post("/suppressed")
def suppressed() -> Page:
    """Whether one whole address is on the suppression list (it holds hashes only)."""
    typed = request.form.get("address", "")[: report.MAX_QUERY + 1]
    try:
        with current_web().factory() as session:
            listed = report.suppression_lookup(session, typed)
    except report.SearchRefused as exc:
        page = render_template("admin/people/index.html", **overview(listed_error=str(exc)))
        return page, 400
    return render_template("admin/people/index.html", **overview(listed=listed))
