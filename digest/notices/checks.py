"""Preflight of the emails other than the digest, for ``digest check``.

The confirmation email and the "your links" email are rendered from the configured
templates folder (the built-in one, or a copied ``templates_dir``) with sample data, then
put through the same pure checks as a digest (:mod:`digest.render.preflight`): they render
(a template error names its file and line), stay under the clipping size, link only to
https addresses, give every image alt text, and carry their links in both parts; the
confirmation is also built into its MIME message and checked as a send would, and each
MJML source goes through MJML's official validator like the digest's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from digest.config import Settings
from digest.edition.checks import validate_mjml
from digest.errors import MessageError, TemplateError
from digest.mail.message import new_placeholder
from digest.notices.confirmation import (
    CONFIRM_MJML,
    CONFIRM_SUBJECT,
    CONFIRM_TEXT,
    LINKS_MJML,
    LINKS_SUBJECT,
    LINKS_TEXT,
    ConfirmationContent,
    ConfirmationRenderer,
    build_confirmation,
    confirm_link,
)
from digest.render.preflight import image_problems, link_problems, read_html, size_problems
from digest.render.renderer import Rendered

#: Categories the sample confirmation names.
SAMPLE_CATEGORIES = ("Neurology", "Rehabilitation")
#: What ``digest check`` checks besides the digest: (name, its templates).
NOTICES = (
    ("confirmation email", (CONFIRM_SUBJECT, CONFIRM_MJML, CONFIRM_TEXT)),
    ("links email", (LINKS_SUBJECT, LINKS_MJML, LINKS_TEXT)),
)


def notice_problems(settings: Settings, *, now: dt.datetime, validate: bool = True) -> list[str]:
    """Every problem of the confirmation and links emails, each naming the email and the
    template file (and line, where a template error has one); empty when all is well.
    With ``validate``, MJML's official validator runs on each too (when installed)."""
    try:
        renderer = ConfirmationRenderer(settings)
    except TemplateError as exc:
        return [str(exc)]
    token = new_placeholder()
    confirm = confirm_link(settings, token)
    preferences, unsubscribe = f"{settings.base_url}/p/{token}", f"{settings.base_url}/u/{token}"
    content = ConfirmationContent(SAMPLE_CATEGORIES, "weekly", now + dt.timedelta(days=7))
    values = {"preferences": preferences, "unsubscribe": unsubscribe}
    links_templates = NOTICES[1][1]

    def built(rendered: Rendered) -> list[str]:
        try:
            build_confirmation(settings, rendered, placeholder=token, date=now)
        except MessageError as exc:
            return [str(exc)]
        return []

    confirm_values = renderer.confirmation_values(content, confirm)
    problems = _checked(
        "confirmation email",
        renderer,
        (NOTICES[0][1], confirm_values),
        {"confirmation link": confirm},
        built,
        validate=validate,
    )
    problems += _checked(
        "links email",
        renderer,
        (links_templates, values),
        {"preferences link": preferences, "unsubscribe link": unsubscribe},
        lambda rendered: [],
        validate=validate,
    )
    return problems


def _checked(
    name: str,
    renderer: ConfirmationRenderer,
    email: tuple[tuple[str, str, str], dict[str, Any]],
    links: dict[str, str],
    build: Callable[[Rendered], list[str]],
    *,
    validate: bool,
) -> list[str]:
    """Render one email (its templates, with these values) and run the checks on it;
    problems start with ``name``."""
    templates, values = email
    try:
        rendered = renderer.render_notice(templates, values)
    except TemplateError as exc:
        return [f"{name}: {exc}"]
    _, mjml_name, text_name = templates
    html_file = renderer.templates_dir / mjml_name
    text_file = renderer.templates_dir / text_name
    page = read_html(rendered.html)
    problems = [f"{name}: {html_file}: {p}" for p in size_problems(rendered.html)]
    for problem in link_problems(page, rendered.text):
        where = text_file if problem.startswith("text part") else html_file
        problems.append(f"{name}: {where}: {problem}")
    problems += [f"{name}: {html_file}: {p}" for p in image_problems(page)]
    for what, url in links.items():
        if url not in page.hrefs:
            problems.append(f"{name}: {html_file}: the HTML part has no {what}")
        if url not in rendered.text:
            problems.append(f"{name}: {text_file}: the text part has no {what}")
    if not rendered.subject:
        problems.append(f"{name}: {renderer.templates_dir / templates[0]}: the subject is empty")
    if problems:
        return problems
    problems = build(rendered)
    if validate:
        source = renderer.notice_mjml(templates, values)
        problems += [f"{name}: {p}" for p in validate_mjml(renderer, source, mjml_name).problems]
    return problems
