"""SMTP delivery: STARTTLS or implicit TLS, login, a pool of reused connections, and
PIPELINING (RFC 2920) across messages where the server offers it.

Each connection takes a run of messages (:meth:`SmtpTransport.deliver`). With pipelining,
one write holds the end of the previous message's data and the next message's MAIL, RCPT
and DATA, so a message costs one round trip; the replies are read back one by one in the
order their commands went, so a refusal at any command belongs to the right recipient.
Without pipelining every command waits for its reply.

The reply to the end of data is waited for as RFC 5321 §4.5.3.2.6 says (10 minutes by
default, ``data_timeout``); every other reply for ``timeout``. A message whose end of data
was written but whose reply never came (a timeout, a dropped connection) may have been
taken: it is reported with ``unknown`` set and never sent again here. A drop before its end
of data is harmless: the message goes again at once on a new connection.

Failures become :class:`DeliveryFailed` (permanent for 5xx replies) or, when no connection
can be opened at all, :class:`TransportUnavailable`. A server that refuses a further
connection (a 421 greeting: too many connections) while others are open gets no more than
those: a run that cannot get its own connection ends without taking a message.
"""

from __future__ import annotations

import contextlib
import queue
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from digest.errors import TransportUnavailable
from digest.mail.transports.base import (
    Delivered,
    DeliveryFailed,
    Envelope,
    Job,
    OnWire,
    TransportBase,
)

_LEADING_DOT = re.compile(rb"(?m)^\.")
#: RFC 5321 §4.5.3.2.6: wait this long for the reply to the end of data.
DATA_TIMEOUT = 600.0
_MAX_LINE = 8192
_EOD = b".\r\n"


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency. Only for messages not known to be ``plain``."""
    if message.startswith(b".") or b"\r\n." in message:
        return _LEADING_DOT.sub(b"..", message)
    return message


def with_end(job: Job) -> bytes:
    """The message as DATA sends it: dot-stuffed unless ``plain``, then ``.\\r\\n``."""
    body = job.message if job.plain else dot_stuff(job.message)
    return body + (_EOD if body.endswith(b"\r\n") else b"\r\n" + _EOD)


class SmtpOptions(Protocol):
    """Where and how to hand messages to a mail server (``smtp_url``, already parsed)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def security(self) -> str: ...  # "starttls", "tls" (implicit, smtps) or "none"
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def data_timeout(self) -> float: ...


class _Dropped(Exception):
    """The connection broke or timed out; ``why`` says how."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Line:
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
        self._timeout = self.sock.gettimeout()

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Dropped(f"connection lost: {exc}") from None

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
                    raise _Dropped("connection lost: the server closed it")
                texts.append(line[4:].strip().decode("utf-8", "replace"))
                if line[3:4] != b"-":
                    break
        except TimeoutError:
            raise _Dropped(f"no reply in {timeout:g} s") from None
        except OSError as exc:
            raise _Dropped(f"connection lost: {exc}") from None
        try:
            code = int(line[:3])
        except ValueError:
            raise _Dropped(f"connection lost: garbled reply {line[:40]!r}") from None
        return code, " ".join(texts)


def _envelope(envelope: Envelope) -> bytes:
    return b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        envelope.sender.encode("ascii"),
        envelope.recipient.encode("ascii"),
    )


class SmtpTransport(TransportBase):
    """``connections`` SMTP connections, opened on demand and reused; as many runs of
    :meth:`deliver` (or calls of :meth:`send`) may go on at once (``concurrency``)."""

    name = "smtp"

    def __init__(
        self,
        settings: SmtpOptions,
        *,
        connections: int = 1,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.data_timeout = getattr(settings, "data_timeout", DATA_TIMEOUT)
        self.concurrency = max(1, connections)
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._idle: queue.LifoQueue[_Line] = queue.LifoQueue()
        self._open: set[_Line] = set()
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self.most = self.concurrency  # connections the server accepts, as far as is known

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # ------------------------------------------------------------ connections

    def _connect(self) -> _Line:
        s = self.settings
        try:
            conn: smtplib.SMTP
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.ssl_context)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    conn.close()
                    raise TransportUnavailable(
                        f"SMTP server {self.where} does not offer STARTTLS; refusing to send "
                        "in clear text (add ?starttls=false to smtp_url to allow it)"
                    )
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if s.username:
                conn.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportUnavailable(
                f"SMTP server {self.where} refused the login: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransportUnavailable(
                f"cannot connect to SMTP server {self.where}: {reason}"
            ) from None
        line = _Line(conn)
        with self._lock:
            self._open.add(line)
        return line

    def _checkout(self, *, wait: bool) -> _Line | None:
        """An idle connection or a new one. When the server takes no more connections than
        are open: None, or with ``wait`` one that comes free. TransportUnavailable when
        none can be opened at all."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._opening:  # one connection opened at a time: ``_open`` is exact here
            try:
                return self._idle.get_nowait()  # one came back meanwhile
            except queue.Empty:
                pass
            if len(self._open) < self.most:
                try:
                    return self._connect()
                except TransportUnavailable:
                    if not self._open:
                        raise
                    self.most = len(self._open)  # the server takes no more than these
        if not wait:
            return None
        try:
            return self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise TransportUnavailable(
                f"no SMTP connection to {self.where} came free in {self.timeout} s"
            ) from None

    def _checkin(self, line: _Line) -> None:
        self._idle.put(line)

    def _discard(self, line: _Line) -> None:
        with self._lock:
            self._open.discard(line)
        with contextlib.suppress(OSError):
            line.conn.close()

    # ------------------------------------------------------------ sending

    def send(self, envelope: Envelope, message: bytes) -> str:
        """One message (notices, tests): raises DeliveryFailed if it was not taken."""
        for _, result in self._run([Job(0, envelope, message)], lambda key: None, wait=True):
            if isinstance(result, DeliveryFailed):
                raise result
            return result
        raise AssertionError("unreachable")

    def deliver(self, jobs: Iterable[Job | None], on_wire: OnWire) -> Iterator[Delivered]:
        """A run of messages on one connection; see the module's docstring. Takes no job
        when the server accepts no further connection while others are open."""
        return self._run(jobs, on_wire, wait=False)

    def _run(
        self, jobs: Iterable[Job | None], on_wire: OnWire, *, wait: bool
    ) -> Iterator[Delivered]:
        line = self._checkout(wait=wait)
        if line is None:
            return
        run = _Run(self, line, on_wire)
        try:
            for job in jobs:
                if job is None:
                    yield from run.finish()
                else:
                    yield from run.one(job)
            yield from run.finish()
        finally:
            run.close()

    def close(self) -> None:
        with self._lock:
            lines, self._open = list(self._open), set()
        for line in lines:
            try:
                line.conn.quit()
            except (OSError, smtplib.SMTPException):
                line.conn.close()
        self._idle = queue.LifoQueue()


class _Run:
    """The state of one connection's run: the message whose DATA was accepted and whose
    content goes out with the next write (``ready``), and the connection."""

    def __init__(self, transport: SmtpTransport, line: _Line, on_wire: OnWire) -> None:
        self.transport = transport
        self.line: _Line | None = line
        self.on_wire = on_wire
        self.ready: Job | None = None

    def _line(self) -> _Line:
        if self.line is None:
            self.line = self.transport._checkout(wait=True)
            assert self.line is not None
        return self.line

    def _drop(self) -> None:
        if self.line is not None:
            self.transport._discard(self.line)
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
            except _Dropped as exc:  # nothing of ``job`` was accepted: again, at once
                self._drop()
                if attempt == 2:
                    yield job, DeliveryFailed(exc.why, permanent=False)

    def _pipelined(self, line: _Line, job: Job) -> Iterator[Delivered]:
        ready, self.ready = self.ready, None
        head = with_end(ready) if ready is not None else b"RSET\r\n" if line.dirty else b""
        if ready is not None:
            self.on_wire(ready.key)
        try:
            line.write(head + _envelope(job.envelope))
            result = self._end_reply(line) if ready is not None else None
        except _Dropped as exc:
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

    def _end_reply(self, line: _Line) -> str | DeliveryFailed:
        """The reply to an end of data just written (raises _Dropped: outcome unknown)."""
        code, text = line.reply(self.transport.data_timeout)
        if code == 250:
            return f"{code} {text}"
        return _failure(code, text)

    def _plain(self, line: _Line, job: Job) -> Delivered:
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
            line.write(with_end(job))
            return job, self._end_reply(line)
        except _Dropped as exc:
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
            line.write(with_end(ready))
            result = self._end_reply(line)
        except _Dropped as exc:
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
            self.transport._checkin(self.line)
        self.line = None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _failure(code: int, reply: bytes | str) -> DeliveryFailed:
    text = _text(reply)
    return DeliveryFailed(f"{code} {text}".strip(), permanent=500 <= code < 600, code=code)


def _unknown(exc: _Dropped) -> DeliveryFailed:
    return DeliveryFailed(
        f"outcome unknown: the server may have taken it ({exc.why} after its end of data)",
        permanent=False,
        unknown=True,
    )
