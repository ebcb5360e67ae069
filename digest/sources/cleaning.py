"""Pure clean-up of what sources say: HTML to safe plain text, canonical URLs, DOIs and PMIDs.

Nothing here touches the database or the clock; every function takes text and returns text
(or ``None`` when the value cannot be used).
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: Elements whose content is never text a reader should see.
_SKIPPED = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math", "head"}
)
#: Elements that start a new line of text.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
#: C0/C1 control characters other than tab and newline, and lone UTF-16 surrogates: neither
#: belongs in text, and PostgreSQL refuses NUL.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LOOKS_LIKE_MARKUP = re.compile(r"<[A-Za-z!/?]|&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_SPACES = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")

#: Query parameters that only track where a click came from; never part of a page's identity.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "_ga", "_gl", "ref_src", "mkt_tok", "oly_enc_id",
        "oly_anon_id", "vero_id", "wt.mc_id", "s_cid",
    }
)  # fmt: skip
_DOI = re.compile(r"10\.\d{4,9}/\S+")
_DOI_PREFIX = re.compile(
    r"^(?:doi:\s*|info:doi/|https?://(?:dx\.)?doi\.org/|https?://doi\.org/)", re.IGNORECASE
)
_PMID_PREFIX = re.compile(r"^(?:pmid:?\s*|info:pmid/)", re.IGNORECASE)
_PMID_URL = re.compile(
    r"https?://(?:pubmed\.ncbi\.nlm\.nih\.gov/|www\.ncbi\.nlm\.nih\.gov/pubmed/)(\d{1,9})\b",
    re.IGNORECASE,
)
_PMID_TEXT = re.compile(r"(?:pmid:?\s*|info:pmid/)(\d{1,9})\b", re.IGNORECASE)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _strip_once(markup: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except AssertionError:  # html.parser's answer to some malformed declarations
        return re.sub(r"<[^>]*>?", " ", markup)
    return "".join(parser.parts)


def strip_bad_chars(text: str) -> str:
    """``text`` without control characters (tab and newline kept) or lone surrogates."""
    return _BAD_CHARS.sub("", text)


def html_to_text(markup: str) -> str:
    """Readable plain text from an HTML fragment (or from text that may hold some markup).

    Tags are dropped, and with ``script``, ``style`` and the like their content too; entities
    are decoded; block elements become line breaks, paragraphs blank lines. Markup that was
    escaped twice (``&amp;lt;script&amp;gt;``) is stripped as well. The result is text, to be
    escaped wherever it is shown, never markup.
    """
    text = strip_bad_chars(markup.replace("\r\n", "\n").replace("\r", "\n"))
    for _ in range(3):
        if not _LOOKS_LIKE_MARKUP.search(text):
            break
        stripped = strip_bad_chars(_strip_once(text))
        if stripped == text:
            break
        text = stripped
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def one_line(markup: str) -> str:
    """:func:`html_to_text` folded onto one line."""
    return " ".join(html_to_text(markup).split())


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2 and not text[limit - 1].isspace():
        cut = cut[:space]
    return cut.rstrip(" ,;:-\n") + "…"


def canonical_url(url: str) -> str | None:
    """The canonical form of an http(s) address, or ``None`` if it is not one.

    Scheme and host are lower-cased, a default port and an empty fragment dropped, unsafe
    characters percent-encoded, and tracking parameters (``utm_*``, ``fbclid``...) removed;
    everything else, including the order of the other parameters, is kept as it was.
    """
    text = url.strip()
    if not text or any((ch.isspace() and ch != " ") or ord(ch) < 32 for ch in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host.lower()
    except UnicodeError:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    safe = "/%:@!$&'()*+,;=-._~"
    path = quote(parts.path, safe=safe) or "/"
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p)]
    query = quote("&".join(kept), safe=safe + "?")
    fragment = quote(parts.fragment, safe=safe + "?#")
    return urlunsplit((scheme, netloc, path, query, fragment))


def _is_tracking(pair: str) -> bool:
    key = unquote(pair.partition("=")[0]).strip().lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def normalise_doi(value: str) -> str | None:
    """``10.1038/s41393-020-0001-2`` from a DOI, ``doi:...`` or ``https://doi.org/...``,
    lower-cased (DOIs are case-insensitive); ``None`` if it is not a DOI."""
    text = _DOI_PREFIX.sub("", value.strip())
    if text.lower().startswith("10.") and "%" in text:
        text = unquote(text)
    text = text.strip().rstrip(".,;")
    return text.lower() if _DOI.fullmatch(text) and len(text) <= 255 else None


def find_doi(text: str) -> str | None:
    """The first DOI mentioned in ``text`` (an identifier, a link), or ``None``."""
    match = _DOI.search(unquote(text))
    if match is None:
        return None
    return normalise_doi(match.group(0).rstrip(").,;\"'>"))


def normalise_pmid(value: str) -> str | None:
    """The digits of a PubMed id given as ``123``, ``PMID: 123`` or ``info:pmid/123``."""
    text = _PMID_PREFIX.sub("", value.strip())
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return text.lstrip("0") or None


def find_pmid(text: str) -> str | None:
    """A PubMed id in an identifier (``pmid:123``, ``info:pmid/123``) or a PubMed link."""
    match = _PMID_URL.search(text) or _PMID_TEXT.search(text)
    return (match.group(1).lstrip("0") or None) if match else None
