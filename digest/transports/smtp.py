"""SMTP delivery with STARTTLS or implicit TLS, authentication, and one reused connection."""

from __future__ import annotations

import smtplib
import ssl

from digest.config import SmtpSettings
from digest.errors import TransportUnavailable
from digest.transports.base import DeliveryFailed, Envelope, TransportBase


class SmtpTransport(TransportBase):
    name = "smtp"

    def __init__(
        self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None

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
        return conn

    def send(self, envelope: Envelope, message: bytes) -> str:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.sendmail(envelope.sender, [envelope.recipient], message)
                return "250 accepted"
            except smtplib.SMTPServerDisconnected:
                self._drop()
                if attempt == 2:
                    raise DeliveryFailed(
                        "connection dropped by the server", permanent=False
                    ) from None
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _failure(code, reply) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code in (421,):
                    self._drop()
                raise _failure(exc.smtp_code, exc.smtp_error) from None
            except (TimeoutError, ConnectionError) as exc:
                self._drop()
                raise DeliveryFailed(f"network error: {exc}", permanent=False) from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                self._conn = None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _failure(code: int, reply: bytes | str) -> DeliveryFailed:
    text = _text(reply)
    return DeliveryFailed(f"{code} {text}".strip(), permanent=500 <= code < 600, code=code)
