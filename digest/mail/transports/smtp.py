"""SMTP delivery: STARTTLS or implicit TLS, login, and a pool of reused connections, each
taking a run of messages (:meth:`SmtpTransport.deliver`), pipelined across messages where
the server offers PIPELINING (the conversation itself: :mod:`.smtp_wire`).

Failures become :class:`DeliveryFailed` (permanent for 5xx replies; ``unknown`` when the end
of data went out without a reply) or, when no connection can be opened at all,
:class:`TransportUnavailable`. A server that refuses a further connection (a 421 greeting:
too many connections) while others are open gets no more than those: a run that cannot get
its own connection ends without taking a message.
"""

from __future__ import annotations

import contextlib
import queue
import smtplib
import ssl
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

from digest.errors import TransportUnavailable
from digest.mail.transports.base import (
    Delivered,
    DeliveryFailed,
    Envelope,
    Job,
    OnWire,
    TransportBase,
)
from digest.mail.transports.smtp_wire import Conversation, Line, dot_stuff, reply_text

__all__ = ["DATA_TIMEOUT", "SmtpOptions", "SmtpTransport", "dot_stuff"]

#: RFC 5321 §4.5.3.2.6: wait this long for the reply to the end of data.
DATA_TIMEOUT = 600.0


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
        self._idle: queue.LifoQueue[Line] = queue.LifoQueue()
        self._open: set[Line] = set()
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self.most = self.concurrency  # connections the server accepts, as far as is known

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # ------------------------------------------------------------ connections

    def _connect(self) -> Line:
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
                f"{reply_text(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransportUnavailable(
                f"cannot connect to SMTP server {self.where}: {reason}"
            ) from None
        line = Line(conn)
        with self._lock:
            self._open.add(line)
        return line

    def checkout(self, *, wait: bool) -> Line | None:
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

    def checkin(self, line: Line) -> None:
        self._idle.put(line)

    def discard(self, line: Line) -> None:
        with self._lock:
            self._open.discard(line)
        with contextlib.suppress(OSError):
            line.conn.close()

    # ------------------------------------------------------------ sending

    def send(self, envelope: Envelope, message: bytes) -> str:
        """One message (notices, tests): raises DeliveryFailed if it was not taken."""
        for _, result in self._run([Job(0, envelope, (message,))], lambda key: None, wait=True):
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
        line = self.checkout(wait=wait)
        if line is None:
            return
        run = Conversation(self, line, on_wire)
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
