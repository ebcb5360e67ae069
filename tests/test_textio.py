"""Encodings spreadsheets write, told apart the same way for every importer, whether the
bytes come whole or a chunk at a time."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.textio import decode_text, detect_encoding, open_text

ZOE = "email,name\nzoe@example.org,Zoë Müller €\n"


@pytest.mark.parametrize(
    ("data", "text", "name", "first_bad_byte"),
    [
        (ZOE.encode(), ZOE, "UTF-8", None),
        (codecs.BOM_UTF8 + ZOE.encode(), ZOE, "UTF-8", None),
        (ZOE.encode("utf-16"), ZOE, "UTF-16", None),  # Excel's "Unicode text"
        (codecs.BOM_UTF16_BE + ZOE.encode("utf-16-be"), ZOE, "UTF-16", None),
        (ZOE.encode("cp1252"), ZOE, "Windows-1252", 30),
        (b"Zo\xeb", "Zoë", "Windows-1252", 3),
        (b"\x81Zo\xeb", "\x81Zoë", "Latin-1", 1),  # 0x81 is not Windows-1252
        (codecs.BOM_UTF16_LE + b"x", "ÿþx", "Windows-1252", 1),  # odd length: not UTF-16
        (codecs.BOM_UTF8 + b"ab\xff", "ï»¿abÿ", "Windows-1252", 6),
        (b"ab\xc3", "abÃ", "Windows-1252", 3),  # cut in the middle of a character
        (b"", "", "UTF-8", None),
        (b"\xef\xbb", "ï»", "Windows-1252", 1),
    ],
)
def test_each_encoding_and_where_utf8_first_fails(
    data: bytes, text: str, name: str, first_bad_byte: int | None
) -> None:
    decoded, encoding = decode_text(data)
    assert (decoded, encoding.name, encoding.first_bad_byte) == (text, name, first_bad_byte)
    assert encoding.guessed == (first_bad_byte is not None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=7))
def test_chunks_of_any_size_give_the_same_answer(data: bytes, size: int) -> None:
    whole = detect_encoding([data])
    assert detect_encoding([data[i : i + size] for i in range(0, len(data), size)]) == whole
    data.decode(whole.codec)  # the answer always decodes


def test_open_text_streams_a_file_in_its_encoding(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(ZOE.encode("utf-16"))
    stream, encoding = open_text(path)
    with stream:
        assert (stream.read(), encoding.name) == (ZOE, "UTF-16")
