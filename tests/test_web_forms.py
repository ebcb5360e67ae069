"""No form of ``digest serve`` answers 5xx: every POST route (found in ``app.url_map``, so a
new form cannot be forgotten) gets its fields empty, missing, oversized, malformed (bad
tokens, non-UTF-8 percent-encoding, NUL bytes, lone surrogates), repeated where one value is
expected, and whole bodies of the wrong kind. Each answer is a page or message a person can
read. Also: the preferences form refused as a whole, and page templates from a
``templates_dir``."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlencode

import hypothesis
import pytest
from flask import Flask
from hypothesis import strategies as st
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from digest.store.db import transaction
from digest.web import create_app, security
from digest.web.limits import Limit, SignupLimits
from digest.web.state import current_web
from subscribers import service
from subscribers.models import Status
from tests.conftest import NOW, SmtpServer
from tests.web_support import ONE_CLICK, Site, make_site

SECRET = "w" * 24
MEGABYTE = "x" * 1024 * 1024
#: Values a field gets instead of a good one (besides being missing and repeated).
BAD_VALUES = [
    "",
    " ",
    MEGABYTE,
    "y" * 60_000,  # just under the size limit: reaches the view
    "a\x00b",
    "\x00" * 50,
    "<script>alert(1)</script>",
    "Zoë 💥 \u202e",
    "../../etc/passwd",
    "-1",
    "99999999999999999999999",
    "9" * 5000,  # int() refuses more than 4300 digits
    "²",  # a digit to str.isdigit(), not to int()
    "1.",
    "zoe@example.org\r\nBcc: all@example.org",
]
#: Raw urlencoded values: invalid UTF-8, an encoded surrogate, a stray percent.
RAW_VALUES = ["%FF%FE%FD", "%ED%A0%80", "%C3", "%", "%zz", "a%00b"]
BAD_TOKENS = ["A" * 43, "short", "%FF%FE", "%00" * 43, "x" * 5000, "%ED%A0%80" * 15, "é" * 43]


@dataclass(frozen=True)
class Form:
    """A good submission of one form: its path parameters and fields."""

    params: dict[str, str]
    fields: dict[str, str | list[str]]
    json: bool = False


@pytest.fixture
def site(tmp_path: Path, engine: Engine, smtp_server: SmtpServer) -> Site:
    """The pages with the bounce webhooks on, this week's digest sent."""
    site = make_site(tmp_path, engine, smtp_server)
    site.settings = replace(site.settings, bounce_webhook_secret=SECRET)
    site.app = create_app(site.settings, engine, now=lambda: site.clock[0])
    site.app.config["TESTING"] = True  # an exception fails the test with its traceback
    web = site.app.extensions["digest_web"]  # no rate limit: every post reaches the database
    unlimited = Limit("any", 10**9, dt.timedelta(seconds=1))
    web.limits = SignupLimits(unlimited, unlimited, unlimited, unlimited)
    site.send_edition(NOW)
    return site


def good_forms(site: Site) -> dict[str, Callable[[], Form]]:
    """For each POST rule, how to make a submission that works (made fresh each time: a
    confirmation link is used once, a stamp ages)."""
    key = site.app.extensions["digest_web"].key
    zoe = site.subscriber("zoe@example.org").token

    def confirmation() -> str:
        with transaction(site.factory) as session:
            pending = service.add_subscriber(
                session, f"p{time.monotonic_ns()}@example.org", ["neurology"], now=NOW
            )
            return service.open_confirmation(session, pending, now=NOW)

    def stamp() -> str:
        return security.form_stamp(key, time.time())

    bounce = {
        "type": "bounce",
        "recipient": "sam@example.org",
        "status": "4.2.2",
        "diagnostic": "452 mailbox full",
        "message_id": "<x@example.org>",
        "id": "evt-1",
    }
    return {
        "/u/<token>": lambda: Form({"token": zoe}, {"List-Unsubscribe": "One-Click"}),
        "/p/<token>": lambda: Form(
            {"token": zoe},
            {
                "csrf": security.csrf_value(key, zoe),
                "categories": ["neurology", "rehabilitation"],
                "frequency": "weekly",
                "pause": "keep",
                "action": "save",
            },
        ),
        "/subscribe": lambda: Form(
            {},
            {
                "email": f"n{time.monotonic_ns()}@example.org",
                "name": "New Reader",
                "categories": ["neurology"],
                "stamp": stamp(),
                "website": "",
            },
        ),
        "/confirm/<token>": lambda: Form({"token": confirmation()}, {}),
        "/unsubscribe": lambda: Form({}, {"email": "sam@example.org", "stamp": stamp()}),
        "/bounces/json": lambda: Form({}, dict(bounce), json=True),
        "/bounces/ses": lambda: Form({}, {"Type": "Notification", "Message": "{}"}, json=True),
    }


def post_rules(app: Flask) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules() if "POST" in (rule.methods or ())}


def path_of(rule: str, params: dict[str, str]) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: quote(params[m.group(1)], safe="%"), rule)


def readable(answer: TestResponse, what: str) -> None:
    """Not a server error, and something a person can read."""
    assert answer.status_code < 500, (what, answer.status_code)
    body = answer.get_data(as_text=True)
    if answer.status_code >= 400:
        assert body.strip(), what
        if answer.mimetype == "text/html":
            assert "<h1" in body, (what, body[:200])


Post = Callable[..., TestResponse]


def submit(post: Post, path: str, form: Form, fields: dict[str, str | list[str]]) -> TestResponse:
    if form.json:
        return post(
            path, data=json.dumps(fields), content_type="application/json",
            headers={"X-Digest-Secret": SECRET},
        )  # fmt: skip
    return post(path, data=fields)


def test_every_form_is_known(site: Site) -> None:
    """A new POST route fails here until it has a good submission in good_forms (and so
    gets every malformed one below)."""
    assert post_rules(site.app) == set(good_forms(site))


def test_no_form_answers_5xx_whatever_its_fields(site: Site) -> None:
    forms = good_forms(site)
    post: Post = site.app.test_client(use_cookies=False).post
    for rule in sorted(post_rules(site.app)):
        form = forms[rule]()
        readable(submit(post, path_of(rule, form.params), form, form.fields), f"good {rule}")
        for name in form.fields:
            form = forms[rule]()
            path = path_of(rule, form.params)
            missing = {k: v for k, v in form.fields.items() if k != name}
            readable(submit(post, path, form, missing), f"{rule} without {name}")
            for value in BAD_VALUES:
                form = forms[rule]()
                bad = {**form.fields, name: value}
                readable(submit(post, path_of(rule, form.params), form, bad), f"{rule} {name}")
            form = forms[rule]()
            twice = {**form.fields, name: ["one", "two"]}
            readable(submit(post, path_of(rule, form.params), form, twice), f"{rule} {name} x2")
            if not form.json:
                for raw in RAW_VALUES:
                    form = forms[rule]()
                    good = {k: v for k, v in form.fields.items() if k != name}
                    body = f"{urlencode(good, doseq=True)}&{name}={raw}".lstrip("&")
                    answer = post(
                        path_of(rule, form.params),
                        data=body.encode(),
                        content_type="application/x-www-form-urlencoded",
                    )
                    readable(answer, f"{rule} {name}={raw}")
        for key in (k for k in forms[rule]().params):
            for token in BAD_TOKENS:
                form = forms[rule]()
                path = path_of(rule, {**form.params, key: token})
                readable(submit(post, path, form, form.fields), f"{rule} {key}={token[:20]}")


BODIES: list[tuple[str, bytes]] = [
    ("application/x-www-form-urlencoded", b""),
    ("application/x-www-form-urlencoded", b"\xff\xfe\x00garbage=\xff&&&==&%"),
    ("application/x-www-form-urlencoded", MEGABYTE.encode()),
    ("application/x-www-form-urlencoded", b"a=" + b"%" * 60_000),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\n"),
    ("multipart/form-data", b"no boundary"),
    ("application/json", b"[" * 50_000),
    ("application/json", b'{"type": "bounce", "recipient": "\\ud800@example.org"}'),
    ("application/json", b'{"type": "bounce", "recipient": ["a"], "status": {"x": 1}}'),
    ("application/json", b'{"type": "complaint", "recipient": "a\\u0000@example.org"}'),
    ("application/json", b'{"Type": "Notification", "SignatureVersion": 2}'),
    ("application/json", b'{"SigningCertURL": "https://example.org/a", "SignatureVersion": "1"}'),
    ("application/json", b"\xff\xfe{"),
    ("application/json", b"null"),
    ("text/plain", b"\x00\x01\x02"),
    ("", b""),
]  # fmt: skip


def test_no_form_answers_5xx_whatever_its_body(site: Site) -> None:
    forms = good_forms(site)
    post: Post = site.app.test_client(use_cookies=False).post
    for rule in sorted(post_rules(site.app)):
        for content_type, body in BODIES:
            for secret in ({"X-Digest-Secret": SECRET}, {}):
                path = path_of(rule, forms[rule]().params)
                answer = post(path, data=body, content_type=content_type, headers=secret)
                readable(answer, f"{rule} {content_type} {body[:30]!r}")
        form = forms[rule]()
        files = {name: (MEGABYTE.encode()[:1000], "a.txt") for name in form.fields}
        answer = post(path_of(rule, form.params), data=files, content_type="multipart/form-data")
        readable(answer, f"{rule} files instead of fields")
    assert post("/bounces/json?secret=%FF%FE", json={"type": "bounce"}).status_code == 403


def test_a_form_too_large_changes_nothing(site: Site) -> None:
    token = site.subscriber("zoe@example.org").token
    client = site.app.test_client(use_cookies=False)
    answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click", "x": MEGABYTE})
    assert answer.status_code == 413 and "nothing was saved" in answer.get_data(True)
    assert site.subscriber("zoe@example.org").status == Status.ACTIVE


def test_get_routes_with_malformed_parameters(site: Site) -> None:
    client = site.app.test_client(use_cookies=False)
    for rule in site.app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or not rule.arguments:
            continue
        for token in BAD_TOKENS:
            path = path_of(rule.rule, dict.fromkeys(rule.arguments, token))
            readable(client.get(path + "?saved=%FF&x=%00"), f"GET {path[:40]}")


# ---------------------------------------------------------------- the preferences form


def preferences_post(site: Site, fields: dict[str, str | list[str]]) -> TestResponse:
    token = site.subscriber("zoe@example.org").token
    client = site.app.test_client(use_cookies=False)
    with site.app.app_context():
        csrf = security.csrf_value(current_web().key, token)
    return client.post(f"/p/{token}", data={"csrf": csrf, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frequency": "monthly", "pause": "2"}, "Choose at least one topic"),
        ({"categories": ["not-a-topic"], "pause": "4"}, "Choose at least one topic"),
        ({"categories": ["rehabilitation"], "frequency": "daily"}, "every week or once a month"),
        ({"categories": ["rehabilitation"], "pause": "3"}, "a pause of 2, 4 or 8 weeks"),
        ({"categories": ["rehabilitation"], "pause": "-2"}, "a pause of 2, 4 or 8 weeks"),
    ],
)
def test_a_refused_preferences_form_changes_nothing(
    site: Site, fields: dict[str, str | list[str]], message: str
) -> None:
    before = site.subscriber("zoe@example.org")
    answer = preferences_post(site, fields)
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert message in page and 'role="alert"' in page
    assert 'name="csrf"' in page and "Save my choices" in page  # the form, again
    after = site.subscriber("zoe@example.org")
    assert after.status == Status.ACTIVE
    assert {c.slug for c in after.categories} == {c.slug for c in before.categories}
    assert (after.frequency, after.paused_until) == (before.frequency, before.paused_until)


def test_an_unsubscribed_reader_without_a_topic_stays_unsubscribed(site: Site) -> None:
    token = site.subscriber("zoe@example.org").token
    site.app.test_client().post(f"/u/{token}", data=ONE_CLICK)
    answer = preferences_post(site, {"action": "save"})
    assert answer.status_code == 400 and "Choose at least one topic" in answer.get_data(True)
    assert site.subscriber("zoe@example.org").status == Status.UNSUBSCRIBED


# ---------------------------------------------------------------- page templates


def test_a_templates_dir_without_page_templates_uses_the_built_in_ones(
    site: Site, tmp_path: Path
) -> None:
    own = tmp_path / "own"  # what `digest templates copy` makes: email/ only
    (own / "email").mkdir(parents=True)
    app = create_app(replace(site.settings, templates_dir=own), site.engine)
    token = site.subscriber("sam@example.org").token
    for path in ("/subscribe", f"/p/{token}", "/archive"):
        assert app.test_client().get(path).status_code == 200, path


def test_page_templates_copied_before_the_blueprints_still_work(site: Site, tmp_path: Path) -> None:
    own = tmp_path / "own"
    (own / "web" / "site").mkdir(parents=True)
    (own / "web" / "site" / "too_many.html").write_text(
        "<h1>Wait</h1><a href=\"{{ url_for('subscribe_page') }}\">again</a>"
        "<a href=\"{{ url_for('preferences', token='t') }}\">p</a>",
        encoding="utf-8",
    )
    app = create_app(replace(site.settings, templates_dir=own), site.engine)
    with app.test_request_context("/"):
        from flask import render_template

        page = render_template("site/too_many.html")
    assert 'href="/subscribe"' in page and 'href="/p/t"' in page


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(data=st.data())
def test_no_form_or_webhook_answers_5xx_for_arbitrary_text(site: Site, data: st.DataObject) -> None:
    """Arbitrary text (control characters, any script, any length) in every field, and
    extra fields, of every form and webhook of ``digest serve``."""
    post: Post = site.app.test_client(use_cookies=False).post
    rule = data.draw(st.sampled_from(sorted(post_rules(site.app))), label="rule")
    form = good_forms(site)[rule]()
    text = st.text(max_size=300)
    fields: dict[str, str | list[str]] = {
        name: data.draw(st.one_of(st.just(value), text, st.lists(text, max_size=3)), label=name)
        for name, value in form.fields.items()
    }
    extra = data.draw(st.dictionaries(st.text(max_size=20), text, max_size=3), label="extra")
    readable(submit(post, path_of(rule, form.params), form, {**extra, **fields}), rule)
