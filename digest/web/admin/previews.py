"""Previews in the console (what ``digest preview --serve`` showed): any variant of this
week, a subscriber's digest or a reader of some topics, as the HTML (at phone and desktop
widths), the text part and the raw ``.eml``, each exactly what ``digest preview`` writes
(:mod:`digest.preview.reader`, the same code as a send); and test sends of them.

Pages change nothing; a test send is a POST ("[TEST] " subject, no ledger row). A variant
is named by a hash of its key, so URLs carry no reader's id. A subscriber is looked up by a
POSTed address and then named in URLs by a random reference that only this admin's
session maps back to the address (the latest ``KEEP_READERS``), so no address reaches a
URL, a browser's history or a server's access log.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from flask import Response, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.errors import DigestError
from digest.preview.reader import Preview, preview_categories, preview_key, preview_subscriber
from digest.preview.reader import send_test as send_test_message
from digest.web.admin.blueprint import bp
from digest.web.admin.state import current_admin
from digest.web.admin.variants import ledger_variants, variant_id
from digest.web.state import current_web

PHONE_WIDTH, DESKTOP_WIDTH = 375, 680
_FIELDS = ("variant", "reader", "categories", "since")
#: Readers looked up in a session that keep their reference (older links say "look up again").
KEEP_READERS = 20
_READERS = "preview_readers"  # session key: reference -> address
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def _field(values: Mapping[str, str], name: str) -> str:
    """A query's or form's field, its runs of white space made one space, at most 500."""
    return " ".join(str(values.get(name, "")).split())[:500]


@dataclass(frozen=True)
class Target:
    """Which digest a page shows: a variant of this week, a subscriber, or topics."""

    variant: str = ""
    subscriber: str = ""  # the address, never put in a URL: ``reader`` names it there
    reader: str = ""
    categories: str = ""
    since: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, str], readers: Mapping[str, str]) -> Target:
        """The target a query or form names; a ``reader`` reference is looked up in
        ``readers`` (DigestError when this session does not know it)."""
        got = {name: _field(values, name) for name in _FIELDS}
        if got["reader"]:
            address = readers.get(got["reader"])
            if address is None:
                why = "this preview link has expired (a link to a subscriber's digest works "
                why += f"in the session that looked them up, for the latest {KEEP_READERS}); "
                raise DigestError(why + "look the subscriber up again")
            return cls(subscriber=address, reader=got["reader"])
        if got["categories"]:
            return cls(categories=got["categories"], since=got["since"])
        return cls(variant=got["variant"])

    @property
    def query(self) -> dict[str, str]:
        """What a URL says of it: never the address."""
        return {k: v for k, v in asdict(self).items() if v and k != "subscriber"}

    @property
    def title(self) -> str:
        if self.subscriber:
            return f"What {self.subscriber} gets"
        if self.categories:
            since = f" since {self.since}" if self.since else ""
            return f"A reader of {self.categories}{since}"
        return "A variant of this week's edition"

    @property
    def stem(self) -> str:
        """The file name ``digest preview`` gives this reader's files."""
        if self.subscriber:
            return _UNSAFE.sub("_", self.subscriber.strip().lower())
        if self.categories:
            labels = [label for label in self.categories.split(",") if label.strip()]
            return "-".join(sorted(label.strip().lower().replace(" ", "-") for label in labels))
        return f"variant-{self.variant}"


def load(target: Target) -> Preview:
    """The preview ``target`` names, rendered now; :class:`DigestError` if there is none."""
    web, admin = current_web(), current_admin()
    settings, moment = web.settings, web.now()
    if target.subscriber:
        return preview_subscriber(settings, target.subscriber, now=moment, engine=admin.engine)
    if target.categories:
        since = None
        if target.since:
            try:
                day = dt.datetime.fromisoformat(target.since)
            except ValueError:
                why = f"since {target.since!r} is not a date such as 2026-11-16"
                raise DigestError(why) from None
            since = day.replace(tzinfo=day.tzinfo or settings.zone).astimezone(dt.UTC)
        labels = [label for label in target.categories.split(",") if label.strip()]
        return preview_categories(settings, labels, now=moment, since=since, engine=admin.engine)
    for fresh in (False, True):  # the week page's plan, then a new one if it changed since
        plan = admin.week(fresh=fresh)
        for key in plan.recipients:
            if variant_id(key) == target.variant:
                with web.factory() as db:
                    return preview_key(
                        db, settings, key, now=moment, since=None, cutoff=plan.cutoff
                    )
    with web.factory() as db:  # a variant of the ledger (sent already)
        for key in ledger_variants(db, plan.key):
            if variant_id(key) == target.variant:
                return preview_key(db, settings, key, now=moment, since=None, cutoff=plan.cutoff)
    raise DigestError("that variant is not in this week's edition any more")


def _readers() -> dict[str, str]:
    """This session's references to the subscribers it looked up."""
    known = session.get(_READERS)
    return dict(known) if isinstance(known, dict) else {}


def _remember(address: str) -> str:
    """The reference a URL names ``address`` by in this session (kept for the latest
    ``KEEP_READERS`` looked up)."""
    readers = _readers()
    for ref, known in readers.items():
        if known == address:
            return ref
    ref = secrets.token_urlsafe(12)
    readers[ref] = address
    session[_READERS] = dict(list(readers.items())[-KEEP_READERS:])
    return ref


def _target(values: Mapping[str, str]) -> Target:
    return Target.from_values(values, _readers())


@bp.post("/view")
def choose() -> WerkzeugResponse:
    """The "Preview a reader" form: a subscriber's address is swapped for a reference
    before any URL names them; topics go into the URL as they are."""
    address = _field(request.form, "subscriber")
    if address:
        return redirect(url_for("admin.view", reader=_remember(address)), code=303)
    named = {name: _field(request.form, name) for name in ("variant", "categories", "since")}
    query = Target.from_values(named, {}).query
    return redirect(url_for("admin.view", _external=False, **query), code=303)


@bp.get("/view")
def view() -> tuple[str, int]:
    target = Target()
    try:
        target = _target(request.args)
        result = load(target)
    except DigestError as exc:
        return render_template("admin/preview_error.html", target=target, error=str(exc)), 404
    page = render_template(
        "admin/view.html",
        target=target,
        preview=result,
        phone_width=PHONE_WIDTH,
        desktop_width=DESKTOP_WIDTH,
    )
    return page, 200


def _loaded_or_404() -> Preview | Response:
    try:
        result = load(_target(request.args))
    except DigestError as exc:
        return Response(str(exc), status=404, mimetype="text/plain")
    if not result.summaries:
        return Response(f"No email: {result.reason}", status=404, mimetype="text/plain")
    return result


@bp.get("/email")
def email() -> Response:
    """The HTML part, for the preview page's frames."""
    result = _loaded_or_404()
    if isinstance(result, Response):
        return result
    return Response(result.html, mimetype="text/html")


@bp.get("/text")
def text() -> Response:
    """The text part, as ``digest preview`` writes the ``.txt``."""
    result = _loaded_or_404()
    if isinstance(result, Response):
        return result
    return Response(result.text, mimetype="text/plain")


@bp.get("/eml")
def eml() -> Response:
    """The raw message, byte for byte the ``.eml`` ``digest preview`` writes."""
    result = _loaded_or_404()
    if isinstance(result, Response):
        return result
    name = _target(request.args).stem
    return Response(
        result.eml,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{name}.eml"'},
    )


@bp.post("/send-test")
def send_test() -> WerkzeugResponse:
    """Send the previewed digest to one address, marked as a test; no ledger row."""
    web = current_web()
    target = Target()
    address = str(request.form.get("address", "")).strip()
    back = str(request.form.get("back", ""))
    try:
        target = _target(request.form)
        result = load(target)
        transport = web.transport()
        try:
            reply = send_test_message(web.settings, result, address, transport, now=web.now())
        finally:
            transport.close()
    except DigestError as exc:
        flash(f"Not sent: {exc}", "error")
    else:
        flash(f"Sent a test to {address} via {transport.name}: {reply}", "sent")
    if back == "week":
        return redirect(url_for("admin.week"), code=303)
    return redirect(url_for("admin.view", _external=False, **target.query), code=303)
