"""SMTP delivery: STARTTLS or implicit TLS, login, a pool of reused connections, and
PIPELINING (RFC 2920) where the server offers it, handing over the bytes as they are.

With pipelining a message costs two round trips (MAIL+RCPT+DATA, then the content) instead
of four. Failures become :class:`DeliveryFailed` (permanent for 5xx replies) or, when no
connection can be opened at all, :class:`TransportUnavailable`. A server that refuses a
further connection (a 421 greeting: too many connections) while others are open gets no
more than those: the threads share them.
"""

from __future__ import annotations

import contextlib
import queue
import re
import smtplib
import ssl
import threading
from typing import Protocol

from digest.errors import TransportUnavailable
from digest.mail.transports.base import DeliveryFailed, Envelope, TransportBase

_LEADING_DOT = re.compile(rb"(?m)^\.")


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency; a no-op (one scan) for digest's own messages."""
    if message.startswith(b".") or b"\r\n." in message:
        return _LEADING_DOT.sub(b"..", message)
    return message


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


class SmtpTransport(TransportBase):
    """``connections`` SMTP connections, opened on demand and reused; safe to call from
    that many threads at once (``concurrency``)."""

    name = "smtp"

    def __init__(
        self,
        settings: SmtpOptions,
        *,
        connections: int = 1,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.concurrency = max(1, connections)
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._open: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self.most = self.concurrency  # connections the server accepts, as far as is known

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self) -> smtplib.SMTP:
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
        with self._lock:
            self._open.add(conn)
        return conn

    def _checkout(self) -> smtplib.SMTP:
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
        try:
            return self._idle.get(timeout=self.settings.timeout)
        except queue.Empty:
            raise TransportUnavailable(
                f"no SMTP connection to {self.where} came free in {self.settings.timeout} s"
            ) from None

    def _discard(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def send(self, envelope: Envelope, message: bytes) -> str:
        for attempt in (1, 2):
            conn = self._checkout()
            try:
                if conn.has_extn("pipelining"):
                    reply = _send_pipelined(conn, envelope, message)
                else:
                    conn.sendmail(envelope.sender, [envelope.recipient], message)
                    reply = "250 accepted"
            except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
                self._discard(conn)  # a pooled connection may have gone stale: retry once
                if attempt == 2:
                    raise DeliveryFailed(f"connection lost: {exc}", permanent=False) from None
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                self._idle.put(conn)
                raise _failure(code, text) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # the server is closing this connection
                    self._discard(conn)
                else:
                    self._idle.put(conn)
                raise _failure(exc.smtp_code, exc.smtp_error) from None
            self._idle.put(conn)
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            connections, self._open = list(self._open), set()
        for conn in connections:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        self._idle = queue.LifoQueue()


def _send_pipelined(conn: smtplib.SMTP, envelope: Envelope, message: bytes) -> str:
    """MAIL, RCPT and DATA in one write; the content in a second. Raises like smtplib."""
    sock = conn.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("not connected")
    sender = envelope.sender.encode("ascii")
    recipient = envelope.recipient.encode("ascii")
    sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, recipient))
    mail, rcpt, data = conn.getreply(), conn.getreply(), conn.getreply()
    if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        sock.sendall(b".\r\n")  # a server that said 354 anyway: end the empty message
        conn.getreply()
    if mail[0] != 250:
        _reset(conn)
        raise smtplib.SMTPResponseException(mail[0], mail[1])
    if rcpt[0] not in (250, 251):
        _reset(conn)
        raise smtplib.SMTPRecipientsRefused({envelope.recipient: rcpt})
    if data[0] != 354:
        _reset(conn)
        raise smtplib.SMTPResponseException(data[0], data[1])
    body = dot_stuff(message)
    sock.sendall(body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"))
    code, text = conn.getreply()
    if code != 250:
        raise smtplib.SMTPResponseException(code, text)
    return f"{code} {_text(text)}"


def _reset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException):
        conn.rset()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _failure(code: int, reply: bytes | str) -> DeliveryFailed:
    text = _text(reply)
    return DeliveryFailed(f"{code} {text}".strip(), permanent=500 <= code < 600, code=code)
