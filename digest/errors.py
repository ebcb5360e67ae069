"""The exceptions digest raises on purpose.

Everything the CLI reports as one clear line derives from :class:`DigestError`::

    DigestError
     ├── ConfigError          a missing or invalid setting (names the key and its variable)
     │    └── SetupError      no config file here, a bad --config, an unknown DIGEST_* variable
     ├── DataError            bad input data (names the file, line or field)
     ├── TemplateError        a template that does not render (names the file and line)
     ├── MessageError         a built message that breaks the email standards
     ├── TransportError       the mail server or outbox cannot take messages
     │    └── TransportUnavailable   cannot connect at all: nothing was sent
     ├── SendLockLost         the sender can no longer prove it holds the edition: it stopped
     ├── EditionError         an edition that cannot be run as asked
     ├── SendLockLost         a sender that can no longer prove it holds its edition
     ├── PreflightError       rendered digests that must not be sent (lists every problem)
     └── SubscriberError      a subscriber operation that cannot be done

Anything else escaping to the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest reports to its user as one line."""


class ConfigError(DigestError, ValueError):
    """A setting is missing or invalid."""

    def __init__(self, key: str, problem: str, *, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        env = "DIGEST_" + key.upper().replace(".", "_")
        where = f" in {source}" if source else ""
        super().__init__(f"setting '{key}' (environment variable {env}){where}: {problem}")


class SetupError(ConfigError):
    """The configuration cannot be found or read, or names something unknown. The message is
    the whole line: it names the real cause (the folder, ``--config``, the variable)."""

    def __init__(self, message: str, *, key: str = "config") -> None:
        self.key = key
        self.problem = message
        self.source = None
        Exception.__init__(self, message)


class DataError(DigestError, ValueError):
    """Input data is malformed; the message says where."""


class TemplateError(DigestError):
    """A template failed to load or render; the message names file and line."""


class MessageError(DigestError):
    """A built message does not meet the email standards."""


class TransportError(DigestError):
    """Delivery through the configured transport failed."""


class TransportUnavailable(TransportError):
    """The transport cannot be reached at all; nothing was handed over."""


class SendLockLost(DigestError):
    """The sender can no longer prove it holds the edition's send lock (its lease was not
    renewed in time, or the database session holding the lock is gone): another sender may
    be running, so it stopped before its next message."""

    def __init__(self, edition: str = "", why: str = "") -> None:
        what = f"edition {edition}" if edition else "the edition"
        because = f" ({why})" if why else ""
        super().__init__(
            f"lost the send lock of {what}{because}; nothing more was sent, what was sent "
            "is recorded; run `digest send` again once no other sender is running"
        )


class EditionError(DigestError):
    """An edition cannot be run as asked."""


class PreflightError(DigestError):
    """Preflight checks found problems; nothing was sent. The message lists every one."""

    def __init__(self, problems: list[str], *, what: str = "nothing was sent") -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"preflight found {count} problem{'s' if count != 1 else ''}; {what}:\n{lines}"
        )


class SubscriberError(DigestError, ValueError):
    """A subscriber operation was refused (unknown address, invalid value...)."""
