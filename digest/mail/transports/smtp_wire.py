"""One SMTP connection's conversation: a run of messages, pipelined across messages.

With PIPELINING (RFC 2920), one write holds the end of the previous message's data and the
next message's MAIL, RCPT and DATA, so a message costs one round trip; the replies are read
back one by one in the order their commands went, so a refusal at any command belongs to
the right recipient. Without it, every command waits for its reply.

The reply to the end of data is awaited for ``data_timeout`` (RFC 5321 §4.5.3.2.6), every
other reply for ``timeout``. A message whose end of data was written but whose reply never
came may have been taken: its failure has ``unknown`` set and it is never sent again here.
A drop before its end of data is harmless: the message goes again at once on a new
connection. ``on_wire`` is called just before the write that holds a message's end of data.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Protocol

from digest.mail.transports.base import Delivered, DeliveryFailed, Envelope, Job, OnWire


class Pool(Protocol):
    """Where a conversation gets (and gives back) its connections."""

    timeout: float
    data_timeout: float

    def checkout(self, *, wait: bool) -> Line | None: ...
    def checkin(self, line: Line) -> None: ...
    def discard(self, line: Line) -> None: ...


_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_LINE = 8192
_EOD = b".\r\n"
#: At most this many buffers to one ``sendmsg`` (Linux's IOV_MAX is 1024).
_IOV_MAX = 1000


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency. Only for messages not known to be ``plain``."""
    if message.startswith(b".") or b"\r\n." in message:
        return _LEADING_DOT.sub(b"..", message)
    return message


def with_end(job: Job) -> list[bytes]:
    """The message as DATA sends it, in pieces: dot-stuffed unless ``plain`` (then joined
    first), then ``.\\r\\n``."""
    pieces = list(job.message) if job.plain else [dot_stuff(job.whole())]
    last = pieces[-1] if pieces else b""
    pieces.append(_EOD if last.endswith(b"\r\n") else b"\r\n" + _EOD)
    return pieces


class Dropped(Exception):
    """The connection broke or timed out; ``why`` says how."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Line:
    """One open connection, read and written directly (smtplib only opens it)."""

    def __init__(self, conn: smtplib.SMTP) -> None:
        assert conn.sock is not None
        assert conn.file is not None
        self.conn = conn
        self.sock: socket.socket = conn.sock
        self.file: BinaryIO = conn.file
        self.pipelining = conn.has_extn("pipelining")
        with contextlib.suppress(OSError):  # each write is whole: Nagle would only delay it
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dirty = False  # a failed transaction is open: RSET before the next MAIL
        self._tls = isinstance(self.sock, ssl.SSLSocket)
        self._timeout = self.sock.gettimeout()

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Dropped(f"connection lost: {exc}") from None

    def write_pieces(self, pieces: Sequence[bytes]) -> None:
        """Write ``pieces`` one after another without joining them: ``sendmsg`` hands the
        kernel the pieces where they are (a message is not copied in this process). A TLS
        socket has no ``sendmsg``: the pieces are joined for it."""
        if self._tls or len(pieces) > _IOV_MAX:
            self.write(b"".join(pieces))
            return
        try:
            _send_pieces(self.sock, pieces)
        except OSError as exc:
            raise Dropped(f"connection lost: {exc}") from None

    def reply(self, timeout: float) -> tuple[int, str]:
        """The next reply, waiting at most ``timeout`` seconds for it."""
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        texts = []
        try:
            while True:
                line = self.file.readline(_MAX_LINE)
                if not line:
                    raise Dropped("connection lost: the server closed it")
                texts.append(line[4:].strip().decode("utf-8", "replace"))
                if line[3:4] != b"-":
                    break
        except TimeoutError:
            raise Dropped(f"no reply in {timeout:g} s") from None
        except OSError as exc:
            raise Dropped(f"connection lost: {exc}") from None
        try:
            code = int(line[:3])
        except ValueError:
            raise Dropped(f"connection lost: garbled reply {line[:40]!r}") from None
        return code, " ".join(texts)


def _send_pieces(sock: socket.socket, pieces: Sequence[bytes]) -> None:
    """``sendall`` for a list of buffers: ``sendmsg`` until every byte is written, going
    on after a partial write from where it stopped."""
    views: list[bytes | memoryview] = list(pieces)
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = memoryview(views[0])[sent:]


def _envelope(envelope: Envelope) -> bytes:
    return b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        envelope.sender.encode("ascii"),
        envelope.recipient.encode("ascii"),
    )


class Conversation:
    """The state of one connection's run: the message whose DATA was accepted and whose
    content goes out with the next write (``ready``), and the connection."""

    def __init__(self, transport: Pool, line: Line, on_wire: OnWire) -> None:
        self.transport = transport
        self.line: Line | None = line
        self.on_wire = on_wire
        self.ready: Job | None = None

    def _line(self) -> Line:
        if self.line is None:
            self.line = self.transport.checkout(wait=True)
            assert self.line is not None
        return self.line

    def _drop(self) -> None:
        if self.line is not None:
            self.transport.discard(self.line)
            self.line = None

    def one(self, job: Job) -> Iterator[Delivered]:
        """Hand over ``job``; yields what became known (the ready message's outcome, and
        ``job``'s if it was refused before its content)."""
        for attempt in (1, 2):
            line = self._line()
            try:
                if line.pipelining:
                    yield from self._pipelined(line, job)
                else:
                    yield self._plain(line, job)
                return
            except Dropped as exc:  # nothing of ``job`` was accepted: again, at once
                self._drop()
                if attempt == 2:
                    yield job, DeliveryFailed(exc.why, permanent=False)

    def _pipelined(self, line: Line, job: Job) -> Iterator[Delivered]:
        ready, self.ready = self.ready, None
        head = with_end(ready) if ready is not None else [b"RSET\r\n"] if line.dirty else []
        if ready is not None:
            self.on_wire(ready.key)
        try:
            line.write_pieces([*head, _envelope(job.envelope)])
            result = self._end_reply(line) if ready is not None else None
        except Dropped as exc:
            if ready is not None:
                yield ready, _unknown(exc)
            raise
        if ready is not None and result is not None:
            yield ready, result  # after a 421 too: the replies that follow say if it closed
        if ready is None and line.dirty:
            line.reply(self.transport.timeout)  # RSET
            line.dirty = False
        timeout = self.transport.timeout
        mail, rcpt, data = line.reply(timeout), line.reply(timeout), line.reply(timeout)
        if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
            self.ready = job
            return
        refusal = mail if mail[0] != 250 else rcpt if rcpt[0] not in (250, 251) else data
        if data[0] == 354:  # a server that said 354 anyway: end the empty message
            line.write(_EOD)
            line.reply(timeout)
        else:
            line.dirty = True
        if 421 in (mail[0], rcpt[0], data[0]):
            self._drop()  # the server is closing this connection
        yield job, _failure(*refusal)

    def _end_reply(self, line: Line) -> str | DeliveryFailed:
        """The reply to an end of data just written (raises Dropped: outcome unknown)."""
        code, text = line.reply(self.transport.data_timeout)
        if code == 250:
            return f"{code} {text}"
        return _failure(code, text)

    def _plain(self, line: Line, job: Job) -> Delivered:
        """Without pipelining: each command waits for its reply."""
        timeout = self.transport.timeout
        if line.dirty:
            line.write(b"RSET\r\n")
            line.reply(timeout)
            line.dirty = False
        commands = _envelope(job.envelope).split(b"\r\n")[:3]
        for command, good in zip(commands, ((250,), (250, 251), (354,)), strict=True):
            line.write(command + b"\r\n")
            code, text = line.reply(timeout)
            if code not in good:
                line.dirty = True
                if code == 421:
                    self._drop()
                return job, _failure(code, text)
        self.on_wire(job.key)
        try:
            line.write_pieces(with_end(job))
            return job, self._end_reply(line)
        except Dropped as exc:
            self._drop()
            return job, _unknown(exc)

    def finish(self) -> Iterator[Delivered]:
        """Send the ready message's content and wait for its outcome."""
        ready, self.ready = self.ready, None
        if ready is None:
            return
        line = self.line
        assert line is not None  # a ready message keeps its connection
        self.on_wire(ready.key)
        try:
            line.write_pieces(with_end(ready))
            result = self._end_reply(line)
        except Dropped as exc:
            self._drop()
            result = _unknown(exc)
        yield ready, result

    def close(self) -> None:
        """Give the connection back to the pool (or close it: a message left half-sent)."""
        if self.line is None:
            return
        if self.ready is not None:  # the run was abandoned after a 354: never reuse it
            self._drop()
        else:
            self.transport.checkin(self.line)
        self.line = None


def reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _failure(code: int, reply: bytes | str) -> DeliveryFailed:
    text = reply_text(reply)
    return DeliveryFailed(f"{code} {text}".strip(), permanent=500 <= code < 600, code=code)


def _unknown(exc: Dropped) -> DeliveryFailed:
    return DeliveryFailed(
        f"outcome unknown: the server may have taken it ({exc.why} after its end of data)",
        permanent=False,
        unknown=True,
    )
