"""Rendering: Jinja2 -> MJML -> HTML (mjml-python) -> premailer, plus the text part and subject.

Called once per variant of an edition, never once per subscriber. Personal values (the
unsubscribe token) arrive as placeholders of the same length that ``message`` splices later.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import textwrap
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import mjml
from premailer import Premailer

from digest.errors import TemplateError
from digest.render.cards import DigestContent, join_names
from digest.render.identity import IdentitySource, ListIdentity
from digest.render.mjml_lint import locate

DIGEST_MJML = "email/digest.mjml.j2"
DIGEST_CSS = "email/digest.css.j2"
DIGEST_TEXT = "email/digest.txt.j2"
DIGEST_SUBJECT = "email/subject.txt.j2"
TEXT_WIDTH = 72
_DOCTYPE = "<!doctype html>"
_STYLE_OPEN = re.compile(r"<style(?![^>]*data-premailer)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Palette:
    """Colours of the email; every text colour keeps 4.5:1 contrast on its background."""

    brand: str
    text: str = "#1f2933"
    muted: str = "#4a5561"
    page: str = "#eef1f4"
    rule: str = "#d5dbe1"


@dataclass(frozen=True, slots=True)
class Links:
    unsubscribe: str
    preferences: str
    more: str
    #: The web version of this digest (``BASE/v/<web_id>``), when the variant has one.
    web_version: str | None = None
    #: This edition's page on the site (``BASE/editions/<key>``), when it has one.
    edition: str | None = None

    def topic(self, slug: str) -> str:
        """Where all of this edition's new summaries of one topic are listed."""
        return f"{self.edition}/{slug}" if self.edition else self.more


#: The roles mjml-python gives the body's outer element, which is named by the subject.
_ARTICLE = ' aria-roledescription="email" role="article"'


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    html: str
    text: str


def builtin_templates_dir() -> Path:
    """``templates/`` of a source checkout, or the copy shipped inside the installed package."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "templates", package_dir.parent / "templates"):
        if (candidate / DIGEST_MJML).is_file():
            return candidate
    raise TemplateError(f"the built-in templates are missing (looked in {package_dir})")


def wrap(text: Any, width: int = TEXT_WIDTH) -> str:
    """Wrap plain text for the text part; URLs and long words are never broken."""
    return "\n".join(
        textwrap.wrap(str(text), width=width, break_long_words=False, break_on_hyphens=False)
    )


def long_date(day: dt.date) -> str:
    """30 November 2026."""
    return f"{day.day} {day:%B %Y}"


def _join_names(names: Sequence[str], most: int = 3) -> str:
    return join_names(list(names), most=most)


def make_environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "mjml.j2", "html.j2"), default_for_string=True
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = wrap
    env.filters["join_names"] = _join_names
    env.filters["long_date"] = long_date
    return env


def _located(exc: BaseException, fallback: str) -> str:
    """'file:line' of the innermost template frame of ``exc``."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2") or frame.filename.endswith(".html"):
            return f"{frame.filename}:{frame.lineno}"
    return fallback


class Renderer:
    """Renders the digest's subject, HTML and text from one template folder.

    Takes the list's :class:`ListIdentity` (anything carrying it, such as the settings, is
    read once into one)."""

    def __init__(
        self, identity: ListIdentity | IdentitySource, templates_dir: Path | None = None
    ) -> None:
        self.identity = identity = ListIdentity.of(identity)
        self.templates_dir = templates_dir or identity.templates_dir or builtin_templates_dir()
        if not self.templates_dir.is_dir():
            raise TemplateError(f"templates folder {self.templates_dir} does not exist")
        self.env = make_environment(self.templates_dir)
        self.palette = Palette(brand=identity.brand_color)
        logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return str(self.env.get_template(name).render(context))
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {self.templates_dir / name} does not exist") from None
        except jinja2.TemplateError as exc:
            where = _located(exc, str(self.templates_dir / name))
            raise TemplateError(f"{where}: {exc.message or exc}") from None

    def render_digest(self, content: DigestContent, links: Links) -> Rendered:
        context = self.context(content, links)
        mjml_source = self._render(DIGEST_MJML, context)
        css = self._render(DIGEST_CSS, context)
        html = self.mjml_to_html(mjml_source, css)
        text = _normalise_text(self._render(DIGEST_TEXT, context))
        return Rendered(subject=context["subject"], html=html, text=text)

    def render_mjml(self, content: DigestContent, links: Links) -> str:
        """The MJML source of a digest, before it is compiled (for MJML's validator)."""
        return self._render(DIGEST_MJML, self.context(content, links))

    def base_context(self) -> dict[str, Any]:
        """What every email template sees: the site, the sender's name and the palette."""
        identity = self.identity
        return {
            "site": {
                "name": identity.site_name,
                "url": identity.site_url,
                "postal_address": identity.postal_address,
                "language": identity.language,
            },
            "sender_name": identity.sender_name,
            "palette": self.palette,
        }

    def context(self, content: DigestContent, links: Links) -> dict[str, Any]:
        """What the digest templates see, subject and preheader included."""
        context = self.base_context() | {"digest": content, "links": links}
        subject = " ".join(self._render(DIGEST_SUBJECT, context).split())
        context["subject"] = subject
        shown = [f"{n.label}: {n.title}" for n in content.notices]
        shown += [card.title for card in content.cards[:3]]
        context["preheader"] = "; ".join(shown[:3])
        return context

    def mjml_to_html(self, source: str, css: str, template: str = DIGEST_MJML) -> str:
        """Compile MJML ``source`` (rendered from ``template``) and inline ``css``."""
        try:
            html = mjml.mjml2html(source, disable_comments=True, fonts={})
        except Exception as exc:  # MRML raises its own error types, without a position
            path = self.templates_dir / template
            try:
                line = locate(source, path.read_text(encoding="utf-8"))
            except OSError:
                line = None
            where = f"{path}:{line}" if line else str(path)
            raise TemplateError(f"{where}: invalid MJML: {exc}") from None
        # The email is the page's main landmark (named by its subject), so that screen readers
        # can jump to it and no content lies outside a landmark.
        html = html.replace(_ARTICLE, ' role="main"', 1)
        # Inline only our CSS: MJML's head styles (reset rules, media queries) stay in <style>
        # tags, which keeps the responsive layout and avoids ~12 KB of repeated reset rules.
        html = _STYLE_OPEN.sub('<style data-premailer="ignore"', html)
        inlined: str = Premailer(
            html,
            css_text=css,
            allow_network=False,
            keep_style_tags=True,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            method="html",
        ).transform()
        inlined = inlined.replace(' data-premailer="ignore"', "")
        # premailer drops the doctype (peterbe/premailer#156): put it back.
        if not inlined.lstrip().lower().startswith("<!doctype"):
            inlined = f"{_DOCTYPE}\n{inlined}"
        return inlined


def _normalise_text(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines, end with one newline."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"
