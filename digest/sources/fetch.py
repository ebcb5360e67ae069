"""Read a source: a file, ``-`` for standard input, or an http(s) URL (with a timeout and a
size limit). Every failure is one :class:`DataError` line naming the source."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from digest import __version__
from digest.errors import DataError

#: The most a source may hold; summaries for years fit in a few megabytes.
MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = 30.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    name: str  # what to call the source in messages: the path, "stdin" or the URL
    data: bytes


def read_source(
    source: str,
    *,
    stdin: IO[bytes] | None = None,
    timeout: float = TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> Fetched:
    """The bytes of ``source``. Raises :class:`DataError` when it cannot be read, is larger
    than ``max_bytes``, or (for a URL) does not answer within ``timeout`` seconds."""
    if source == "-":
        if stdin is None:
            raise DataError("no standard input to read")
        return Fetched("stdin", _read_limited(stdin, "stdin", max_bytes, None))
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return Fetched(source, fetch_url(source, timeout=timeout, max_bytes=max_bytes))
    if "://" in source:
        raise DataError(f"{source}: only files, - (standard input) and http(s) URLs are read")
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{source}: {_mb(size)} is larger than the {_mb(max_bytes)} limit")
        with path.open("rb") as stream:
            return Fetched(source, _read_limited(stream, source, max_bytes, None))
    except OSError as exc:
        raise DataError(f"cannot read {source}: {exc.strerror or exc}") from None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) addresses only (never ftp:// or file://)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-http(s) URL", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.OpenerDirector()
for _handler in (
    urllib.request.ProxyHandler(),
    urllib.request.HTTPHandler(),
    urllib.request.HTTPSHandler(),
    urllib.request.HTTPDefaultErrorHandler(),
    urllib.request.HTTPErrorProcessor(),
    _HttpOnlyRedirects(),
):
    _OPENER.add_handler(_handler)


def fetch_url(url: str, *, timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES) -> bytes:
    """GET ``url``; the whole answer must arrive within ``timeout`` seconds."""
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked: http(s) only
        url,
        headers={
            "User-Agent": f"digest/{__version__} (summaries import)",
            "Accept": "application/feed+json, application/json, application/rss+xml, "
            "application/atom+xml, application/xml, text/csv, text/xml, */*;q=0.5",
        },
    )
    deadline = time.monotonic() + timeout
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise DataError(
                    f"{url}: {_mb(int(length))} is larger than the {_mb(max_bytes)} limit"
                )
            return _read_limited(response, url, max_bytes, deadline)
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason: Any = exc.reason
        if isinstance(reason, TimeoutError):
            raise DataError(f"{url}: no answer within {timeout:g} seconds") from None
        why = getattr(reason, "strerror", None) or reason
        raise DataError(f"cannot fetch {url}: {why}") from None
    except TimeoutError:
        raise DataError(f"{url}: no answer within {timeout:g} seconds") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise DataError(f"cannot fetch {url}: {exc}") from None


def _read_limited(
    stream: IO[bytes] | Any, name: str, max_bytes: int, deadline: float | None
) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise DataError(f"{name}: larger than the {_mb(max_bytes)} limit; nothing was read")
        chunks.append(chunk)


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size:,} bytes"
