"""Reading sources from files, standard input and URLs, against a real HTTP server on
127.0.0.1: slow answers, errors and oversized bodies each end in one clear line."""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from digest.errors import DataError
from digest.sources.fetch import read_source

EXAMPLES = Path(__file__).parent.parent / "examples"
FEED = (EXAMPLES / "feed-rss2.xml").read_bytes()
FIFTY_MB = 50 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # The client stops reading oversized bodies, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.route()

    def route(self) -> None:
        if self.path == "/feed.xml":
            self.answer(200, FEED, "application/rss+xml")
        elif self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/feed.xml")
            self.end_headers()
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(2)
            self.answer(200, FEED, "application/rss+xml")
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(FIFTY_MB))
            self.end_headers()
            self.stream(FIFTY_MB)
        elif self.path == "/huge-unannounced":
            self.send_response(200)
            self.end_headers()  # no length: read until the connection closes
            self.stream(FIFTY_MB)
        else:
            self.answer(404, b"<html><body>Not found</body></html>", "text/html")

    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, size: int) -> None:
        chunk = b"x" * 1024 * 1024
        for _ in range(size // len(chunk)):
            self.wfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@contextmanager
def serve() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; yields its base URL."""
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve() as url:
        yield url


def test_a_feed_by_url_and_through_a_redirect(base: str) -> None:
    assert read_source(f"{base}/feed.xml").data == FEED
    assert read_source(f"{base}/moved").data == FEED


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.xml", "{url}: the server answered HTTP 404 Not Found"),
        ("/slow", "{url}: no answer within 0.5 seconds"),
        ("/huge", "{url}: 50.0 MB is larger than the 20.0 MB limit"),
        ("/huge-unannounced", "{url}: larger than the 20.0 MB limit; nothing was read"),
        (
            "/to-file",
            "{url}: the server answered HTTP 302 Found - Redirection to url "
            "'file:///etc/passwd' is not allowed",
        ),
    ],
)
def test_urls_that_fail_say_why_in_one_line(base: str, path: str, message: str) -> None:
    url = base + path
    started = time.monotonic()
    with pytest.raises(DataError) as failed:
        read_source(url, timeout=0.5)
    assert str(failed.value) == message.format(url=url)
    assert time.monotonic() - started < 1.9  # never waits for the slow server's answer


def test_nothing_listens(base: str) -> None:
    with serve() as gone:
        pass
    with pytest.raises(DataError, match=r"^cannot fetch http://127\.0\.0\.1:\d+/x: "):
        read_source(f"{gone}/x", timeout=0.5)


def test_files_and_standard_input(tmp_path: Path) -> None:
    assert read_source(str(EXAMPLES / "feed-rss2.xml")).data == FEED
    assert read_source("-", stdin=io.BytesIO(b"[]")).data == b"[]"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(DataError, match=r"big\.json: 2,048 bytes is larger than the 1,024"):
        read_source(str(big), max_bytes=1024)
    with pytest.raises(DataError, match=r"^cannot read .*: Is a directory$"):
        read_source(str(tmp_path))
