"""The outcome journal: what a sender put on the wire and what the server answered, kept
where a ``kill -9`` cannot lose it, without a database commit per message.

Outcomes reach the ledger every ``RECORD_EVERY`` messages. Between two records, a crash
used to leave a hundred rows ``sending`` that the next run had to send again, though most
had been accepted. Each sender therefore appends one line per event to its own file, with
``os.write`` on an ``O_APPEND`` descriptor: the bytes are in the kernel when the call
returns, and the kernel writes them out even if the process is killed the next instant (no
fsync: a power cut is another matter, see below). The lines are

- ``C id,id,...``  rows claimed (written inside the claim's transaction, before it commits);
- ``W id``         this message's end of data is about to be written to the server;
- ``O col=value…`` the server's reply is known: the row's new column values (tab-separated,
  see :func:`_encode`);
- ``S id µs reply`` the same for the common case, a message accepted: the row became
  ``sent`` at that time (microseconds since 1970, UTC; ``sent_at`` and ``updated_at``)
  with that reply; several times cheaper to write than the general line.

At each claim the file starts again (a new file renamed over the old one), and the old
file is kept beside it as the *older* one: the next batch is claimed while the previous
one still goes out (:mod:`digest.delivery.ahead`), and that batch's lines must survive.
The older file replaced at that claim held the batch before it, whose outcomes are all
committed by then. A journal holds two batches at most, in two files.

On resume (under the send lock, no worker running) :func:`read_journals` and
:func:`resolve` decide for each row left ``sending``: an outcome is recorded as such and
not sent again; ``W`` without an outcome is sent again with the in-flight mark and counted
as possibly duplicated (at most one per connection: a sender writes ``W`` only for the
message it is about to end); claimed only is queued again silently (never on the wire).
A row no trusted journal knows (its sender ran on another machine, or this machine
restarted since: ``boot_id`` differs, so unflushed lines may be lost) is counted as
possibly duplicated: when in doubt, more caution.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import socket
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from digest.store.models import DeliveryStatus

CLAIMED, ON_WIRE, OUTCOME = 1, 2, 3
_SUFFIX = ".journal"
#: Journals of this process that are still open (their owner is alive).
_OPEN: weakref.WeakSet[FileJournal] = weakref.WeakSet()


def journal_folder(database_url: str, config_path: Path | None) -> Path:
    """Where a run's journals go: beside a SQLite database file (its data folder), else
    beside ``digest.toml``, else in the system's temporary folder. Other machines' workers
    keep theirs on their own disks (see :func:`resolve` for what that means)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).resolve().parent / "digest-journals"
    if config_path is not None:
        return config_path.parent / "digest-journals"
    return Path(tempfile.gettempdir()) / f"digest-journals-{os.getuid()}"


def database_tag(database_url: str) -> str:
    """A short name for the database (journals of two databases never mix)."""
    plain = make_url(database_url).render_as_string(hide_password=True)
    return hashlib.sha256(plain.encode()).hexdigest()[:12]


def boot_id() -> str:
    """This boot of the machine: a journal written before a restart may have lost lines."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: trust the journal only from this process's start onwards
        return f"unknown-{os.getpid()}"


def _prefix(database_url: str, edition_key: str) -> str:
    return f"{database_tag(database_url)}.{edition_key}."


class FileJournal:
    """One sender's journal (implements the sender's ``Journal`` protocol, plus
    :meth:`claimed` for the claim and :meth:`close`). Thread-safe: connections' threads
    write to it at once; a lock guards the descriptor across the per-claim rotation."""

    def __init__(self, folder: Path, database_url: str, edition_key: str) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{_prefix(database_url, edition_key)}{secrets.token_hex(6)}{_SUFFIX}"
        self.path = folder / name
        self._header = (
            "H "
            + json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "boot": boot_id()})
            + "\n"
        ).encode()
        self.older = self.path.with_suffix(".1" + _SUFFIX)  # matches the same glob
        self._lock = threading.Lock()
        self._claimed = False  # a batch was claimed: a new claim keeps its file as the older
        self._fd = self._start(b"")
        _OPEN.add(self)

    def _start(self, first: bytes) -> int:
        """A fresh file holding the header and ``first``, renamed over the journal."""
        temporary = self.path.with_suffix(".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(fd, self._header + first)
        os.replace(temporary, self.path)
        return fd

    def claimed(self, ids: Sequence[int]) -> None:
        """A new batch: the file starts again. The current file becomes the older one
        (the batch still going out keeps its lines), replacing the batch before it, which
        is all recorded: a sender claims batch N+1 only after batch N-1 is recorded."""
        line = ("C " + ",".join(map(str, ids)) + "\n").encode()
        with self._lock:
            if self._claimed:
                os.replace(self.path, self.older)
            self._claimed = True
            old, self._fd = self._fd, self._start(line)
            os.close(old)

    def on_wire(self, delivery_id: int) -> None:
        line = b"W %d\n" % delivery_id
        with self._lock:
            os.write(self._fd, line)

    def outcome(self, delivery_id: int, row: Mapping[str, object]) -> None:
        line = _sent_line(row) or b"O " + _encode(row).encode() + b"\n"
        with self._lock:
            os.write(self._fd, line)

    def flushed(self) -> None:
        """Outcomes so far are in the database: nothing to do (the next claim starts the
        file again, and resume only looks at rows still ``sending``)."""

    def close(self, *, remove: bool = True) -> None:
        """Stop writing; ``remove`` (the default) once every outcome is committed. Left in
        place after an unexpected error, for the next run to read."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        _OPEN.discard(self)
        if remove:
            self.path.unlink(missing_ok=True)
            self.older.unlink(missing_ok=True)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_SENT = DeliveryStatus.SENT.value
_SENT_COLUMNS = frozenset({"id", "status", "detail", "sent_at", "updated_at"})


def _sent_line(row: Mapping[str, object]) -> bytes | None:
    """The short line of an accepted message (``S``), or None when ``row`` is anything
    else: another status or other columns, or times that are not one UTC moment."""
    at, detail, delivery_id = row.get("sent_at"), row.get("detail"), row.get("id")
    if (
        row.get("status") != _SENT
        or row.keys() != _SENT_COLUMNS
        or not isinstance(at, dt.datetime)
        or at is not row["updated_at"]
        or at.tzinfo is not dt.UTC
        or not isinstance(detail, str)
        or type(delivery_id) is not int
    ):
        return None
    if "\\" in detail or "\t" in detail or "\n" in detail:
        detail = _escape(detail)
    return b"S %d %d %s\n" % (delivery_id, (at - _EPOCH) // _MICROSECOND, detail.encode())


def _sent_row(rest: str) -> dict[str, object]:
    number, micros, detail = rest.split(" ", 2)
    at = _EPOCH + dt.timedelta(microseconds=int(micros))
    return {
        "id": int(number),
        "status": _SENT,
        "detail": _unescape(detail),
        "sent_at": at,
        "updated_at": at,
    }


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _encode(row: Mapping[str, object]) -> str:
    """``column=Tvalue`` fields separated by tabs (T: i int, s text, t time, n None, b
    bool); a third of JSON's cost, which is most of the journal's."""
    fields = []
    last: tuple[object, str] = (None, "")
    for column, value in row.items():
        if isinstance(value, str):
            text = "s" + _escape(value)
        elif isinstance(value, dt.datetime):  # sent_at is updated_at: one conversion
            if value is not last[0]:
                last = (value, "t" + value.isoformat())
            text = last[1]
        elif isinstance(value, bool):
            text = "b1" if value else "b0"
        elif isinstance(value, int):
            text = f"i{value}"
        elif value is None:
            text = "n"
        else:
            raise TypeError(f"cannot journal {column} of type {type(value).__name__}")
        fields.append(f"{column}={text}")
    return "\t".join(fields)


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n"}


def _decode(line: str) -> dict[str, object]:
    row: dict[str, object] = {}
    for field_ in line.split("\t"):
        column, _, text = field_.partition("=")
        kind, value = text[:1], text[1:]
        if kind == "s":
            row[column] = _unescape(value)
        elif kind == "t":
            row[column] = dt.datetime.fromisoformat(value)
        elif kind == "i":
            row[column] = int(value)
        elif kind == "b":
            row[column] = value == "1"
        elif kind == "n":
            row[column] = None
        else:
            raise ValueError(f"unknown field {field_!r}")
    return row


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out, chars = [], iter(value)
    for char in chars:
        out.append(_UNESCAPE.get(next(chars, ""), "") if char == "\\" else char)
    return "".join(out)


@dataclass
class Found:
    """One journal file as read back."""

    path: Path
    trusted: bool  # written on this machine since its last boot: no line can be missing
    alive: bool  # its sender is still running
    states: dict[int, int] = field(default_factory=dict)
    rows: dict[int, dict[str, object]] = field(default_factory=dict)


def read_journals(folder: Path, database_url: str, edition_key: str) -> list[Found]:
    """Every journal of ``edition_key`` in ``folder`` (a sender's, alive or dead)."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"{_prefix(database_url, edition_key)}*{_SUFFIX}")):
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:  # its sender finished meanwhile
            continue
        found.append(_parse(path, text))
    return found


def _parse(path: Path, text: str) -> Found:
    lines = text.split("\n")
    try:
        header = json.loads(lines[0][2:]) if lines[0].startswith("H ") else {}
    except ValueError:
        header = {}
    here = header.get("host") == socket.gethostname() and header.get("boot") == boot_id()
    journal = Found(path, trusted=here, alive=here and _alive(path, header.get("pid")))
    for line in lines[1:-1]:  # after the last newline: unfinished (a kill mid-write)
        try:
            _apply(journal, line)
        except (ValueError, KeyError, TypeError):
            continue
    return journal


def _apply(journal: Found, line: str) -> None:
    kind, _, rest = line.partition(" ")
    if kind == "C":
        for number in rest.split(","):
            journal.states.setdefault(int(number), CLAIMED)
    elif kind == "W":
        journal.states[int(rest)] = ON_WIRE
    elif kind in ("O", "S"):
        row = _decode(rest) if kind == "O" else _sent_row(rest)
        delivery_id = row["id"]
        if not isinstance(delivery_id, int):
            raise ValueError("an outcome without an id")
        journal.states[delivery_id] = OUTCOME
        journal.rows[delivery_id] = row


def _alive(path: Path, pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():  # a journal of this process: alive while it is open
        return any(path in (journal.path, journal.older) for journal in _OPEN)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Resolution:
    """What to do with the rows left ``sending`` (see :func:`resolve`)."""

    outcomes: list[dict[str, object]]  # recorded as they are: never sent again
    resend: list[int]  # sent again with the in-flight mark: may reach their reader twice
    unsent: list[int]  # never on the wire: queued again silently
    unknown: int  # of ``resend``: rows no trusted journal knew (counted, to be safe)


def resolve(sending: Iterable[int], journals: Sequence[Found]) -> Resolution:
    """Decide each row left ``sending`` from the journals: the most a journal knows wins
    (an outcome, else on the wire, else claimed). A row that only an untrusted journal (or
    none) knows may have gone out: it is sent again and counted."""
    outcomes: list[dict[str, object]] = []
    resend: list[int] = []
    unsent: list[int] = []
    unknown = 0
    trusted = [j for j in journals if j.trusted]
    for delivery_id in sending:
        best, row = 0, None
        for journal in trusted:
            state = journal.states.get(delivery_id, 0)
            if state > best:
                best, row = state, journal.rows.get(delivery_id)
        if best == OUTCOME and row is not None:
            outcomes.append(row)
        elif best == CLAIMED:
            unsent.append(delivery_id)
        else:
            resend.append(delivery_id)
            unknown += best == 0
    return Resolution(outcomes, resend, unsent, unknown)


def remove(journals: Iterable[Found]) -> None:
    """Delete journals whose rows are settled (their senders are gone)."""
    for journal in journals:
        journal.path.unlink(missing_ok=True)
