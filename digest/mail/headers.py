"""Header lines: RFC 2047 encoded-words and RFC 5322 folding, for the message templates.

``to_header`` (a reader's ``To``, spliced in per message) and ``subject_header`` are our
own, fast and exact (the standard library's folding can leave ``Subject:`` empty or drop a
space between encoded-words); the other headers go through ``email.headerregistry``.
Pure: text in, ASCII bytes out, each line ending with CRLF.
"""

from __future__ import annotations

import base64
import email.policy
import re
from email.headerregistry import Address

_POLICY = email.policy.SMTP
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 .'_-]{1,60}")


def one_line(value: str) -> str:
    """White space folded to single spaces: no CR or LF can reach a header."""
    return " ".join(value.split())


def header_line(name: str, value: str | Address) -> bytes:
    """One header, RFC 2047-encoded where needed and folded at 78 columns."""
    if isinstance(value, str):
        value = one_line(value)
    else:
        value = Address(one_line(value.display_name), addr_spec=value.addr_spec)
    folded: str = _POLICY.header_factory(name, value).fold(policy=_POLICY)
    return folded.encode("ascii")


_Q_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
#: Encoded text per word: the word stays under RFC 2047's 75 characters and "To: " + word
#: under 78 columns.
_WORD_TEXT = 78 - len("To: =?utf-8?q??=")


#: Q encoding of UTF-8 octets read as Latin-1 characters, in one str.translate.
_Q_ESCAPES = {b: f"={b:02X}" for b in range(256) if chr(b) not in _Q_PLAIN} | {32: "_"}


def _q_char(char: str) -> str:
    return char.encode("utf-8").decode("latin-1").translate(_Q_ESCAPES)


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded-words of UTF-8 for a phrase (a display name): Q encoding
    (readable in raw headers) when it is no longer than base64, each word at most 75
    characters and split between characters, never inside one."""
    octets = text.encode("utf-8")
    b_length = 4 * -(-len(octets) // 3)
    q_text = octets.decode("latin-1").translate(_Q_ESCAPES)
    if len(q_text) <= min(b_length, _WORD_TEXT):  # the common case: one Q word
        return [f"=?utf-8?q?{q_text}?="]
    if b_length <= _WORD_TEXT and b_length < len(q_text):  # one base64 word
        return [f"=?utf-8?b?{base64.b64encode(octets).decode('ascii')}?="]
    q_pieces = [_q_char(char) for char in text]
    if len(q_text) <= b_length:
        words, current = [], ""
        for piece in q_pieces:
            if current and len(current) + len(piece) > _WORD_TEXT:
                words.append(current)
                current = ""
            current += piece
        return [f"=?utf-8?q?{word}?=" for word in [*words, current]]
    chunks, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if chunk and 4 * -(-(len(chunk) + len(encoded)) // 3) > _WORD_TEXT:
            chunks.append(chunk)
            chunk = b""
        chunk += encoded
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in [*chunks, chunk]]


#: RFC 5322's recommended line length, and an encoded-word's overhead (RFC 2047).
_FOLD_AT = 78
_WORD_OVERHEAD = len("=?utf-8?q??=")


def _plain_word(word: str, room: int) -> bool:
    """Whether ``word`` can stand in a header as it is: printable ASCII that no decoder
    could take for an encoded-word, and short enough for a line of its own."""
    return word.isascii() and word.isprintable() and "=?" not in word and len(word) <= room


def subject_header(subject: str, name: str = "Subject") -> bytes:
    """The ``Subject`` line (any unstructured header), folded at spaces into lines of at
    most 78 characters (RFC 5322 §2.2.3), the first never left empty. Runs of words that
    are not plain ASCII become Q encoded-words (RFC 2047) of UTF-8, split between
    characters; the spaces inside a run are encoded with it, so every space reads back."""
    words = one_line(subject).split(" ")
    head = f"{name}:"
    first_room = _FOLD_AT - len(head) - 1
    atoms: list[tuple[bool, str]] = []  # (encoded, text); consecutive encoded words merge
    for index, word in enumerate(words):
        plain = _plain_word(word, first_room if index == 0 else _FOLD_AT - 1)
        if not plain and atoms and atoms[-1][0]:
            atoms[-1] = (True, f"{atoms[-1][1]} {word}")
        else:
            atoms.append((not plain, word))
    lines, line = [], head
    for encoded, text in atoms:
        if not encoded:
            if line != head and len(line) + 1 + len(text) > _FOLD_AT:
                lines.append(line)
                line = ""
            line += " " + text
            continue
        pieces = [_q_char(char) for char in text]
        while pieces:
            room = min(_FOLD_AT - len(line) - 1, 75) - _WORD_OVERHEAD
            taken = size = 0
            while taken < len(pieces) and size + len(pieces[taken]) <= room:
                size += len(pieces[taken])
                taken += 1
            if not taken:  # no room left on this line: the word starts the next one
                lines.append(line)
                line = ""
                continue
            line += f" =?utf-8?q?{''.join(pieces[:taken])}?="
            pieces = pieces[taken:]
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def to_header(address: str, name: str | None) -> bytes:
    """The ``To`` header line; names never carry CR/LF into it.

    A plain name is quoted as it is. Any other name (non-ASCII, quotes, backslashes, very
    long) becomes RFC 2047 encoded-words on lines of at most 78 octets, as
    ``email.headerregistry`` would write it, in a few microseconds instead of 200."""
    if not name:
        return f"To: {address}\r\n".encode("ascii")
    name = one_line(name)
    if not name:
        return f"To: {address}\r\n".encode("ascii")
    if _PLAIN_NAME.fullmatch(name):
        return f'To: "{name}" <{address}>\r\n'.encode("ascii")
    words = encoded_words(name)
    line = f"To: {words[0]} <{address}>"
    if len(words) == 1 and len(line) <= 78:
        return f"{line}\r\n".encode("ascii")
    return ("To: " + "\r\n ".join(words) + f"\r\n <{address}>\r\n").encode("ascii")
