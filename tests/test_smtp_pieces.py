"""Messages go to the SMTP server in the pieces a template made (``sendmsg``, no copy in
this process): what the server receives is the message byte for byte, on a plain
connection and through STARTTLS (where the pieces are joined: TLS has no ``sendmsg``),
with a 3 MB message, with a message that must be dot-stuffed, and several messages
pipelined on one connection; and ``sendmsg`` resumed after partial writes (a socketpair
with a small buffer: loopback TCP takes 3 MB in one call)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.config import parse_smtp_url
from digest.mail.transports import SmtpTransport
from digest.mail.transports.base import Envelope, Job
from digest.mail.transports.smtp_wire import _send_pieces
from tests.conftest import RecordingHandler, free_port

HEAD = b"From: list@example.org\r\nTo: r@example.org\r\nSubject: pieces\r\n\r\n"


def _message(n: int, size: int) -> list[bytes]:
    """A message in many pieces (some empty, one ``size`` bytes of body lines)."""
    line = b"%d a line of the body, long enough to be a line of a message\r\n" % n
    body = line * (size // len(line) + 1)
    return [HEAD, b"", b"token-%d" % n, b"\r\n", body, b"", b"The end.\r\n"]


def _stuffed() -> list[bytes]:
    """A message whose pieces put a dot at the start of a line (not ``plain``)."""
    return [HEAD, b"first line\r\n", b".", b"a dot opens this line\r\n", b"..two\r\n"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("STARTTLS needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(params=["plain", "starttls"])
def server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[RecordingHandler, SmtpTransport]]:
    handler = RecordingHandler()
    port = free_port()
    if request.param == "starttls":
        cert, key = certificate
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
        )
        options = parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=true")
        transport = SmtpTransport(options, ssl_context=ssl.create_default_context(cafile=cert))
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}"))
    controller.start()
    try:
        yield handler, transport
    finally:
        transport.close()
        controller.stop()


def test_messages_in_pieces_arrive_byte_for_byte(
    server: tuple[RecordingHandler, SmtpTransport],
) -> None:
    handler, transport = server
    messages = {
        1: (_message(1, 200), True),
        2: (_message(2, 3_000_000), True),
        3: (_stuffed(), False),
        4: (_message(4, 70_000), True),
    }
    jobs = [
        Job(key, Envelope("list@example.org", f"r{key}@example.org"), pieces, plain)
        for key, (pieces, plain) in messages.items()
    ]
    on_wire: list[int] = []
    outcomes = {job.key: result for job, result in transport.deliver(iter(jobs), on_wire.append)}
    assert outcomes == dict.fromkeys([1, 2, 3, 4], "250 2.0.0 queued")
    assert on_wire == [1, 2, 3, 4]
    received = {m.recipients[0]: m.data for m in handler.messages}
    for key, (pieces, _) in messages.items():
        assert received[f"r{key}@example.org"] == b"".join(pieces)


class CountingSocket:
    """A socket's ``sendmsg``, counting its calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0

    def sendmsg(self, buffers: list[bytes | memoryview]) -> int:
        self.calls += 1
        return self.sock.sendmsg(buffers)


def test_partial_writes_resume_where_they_stopped() -> None:
    """``_send_pieces`` into a socket with a small send buffer and a timeout (as an SMTP
    connection has: each ``sendmsg`` then takes what fits), read in small chunks on the
    other side: it takes many calls, and every byte arrives once, in order."""
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer.settimeout(30)
    counting = CountingSocket(writer)
    pieces = [bytes([65 + i % 26]) * (1000 + 7919 * i) for i in range(40)] + [b"", b"end"]
    got = bytearray()

    def read() -> None:
        while chunk := reader.recv(3000):
            got.extend(chunk)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        _send_pieces(counting, pieces)  # type: ignore[arg-type]
    finally:
        writer.close()
        thread.join()
        reader.close()
    assert counting.calls > 10  # partial writes, each resumed
    assert bytes(got) == b"".join(pieces)
