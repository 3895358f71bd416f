"""Plain text, and the byte-to-text decoding every text-based format shares.

Uploads come from anywhere: UTF-8 with or without a BOM, UTF-16 from Windows tools, legacy
8-bit or CJK encodings. Binary data renamed to ``.txt`` must be refused rather than indexed
as mojibake, so decoding also decides "is this text at all".
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

from rag.app.parsers.base import ParseError, Section, tidy_text

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Share of control characters (other than tab/newline/form feed) above which a successful
# decode is still judged binary: real text has almost none.
_MAX_CONTROL_SHARE = 0.01
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # category Cc minus \t \n \f \r


def decode_text(data: bytes) -> str:
    """``data`` as text: UTF-16 by BOM, else UTF-8 (BOM optional), else a detected encoding.

    Raises ``ParseError`` for an empty file and for binary data (NUL bytes, undecodable
    bytes, or a decode full of control characters).
    """
    if not data.strip():
        raise ParseError("The file is empty.")
    if data.startswith(_UTF16_BOMS):
        text = _decode_or_fail(data, "utf-16")
    elif b"\x00" in data:
        raise ParseError("The file contains binary data (NUL bytes), not text.")
    else:
        text = _decode_utf8(data) or _decode_guessed(data)
    if _control_share(text) > _MAX_CONTROL_SHARE:
        raise ParseError("The file contains binary data (control characters), not text.")
    return text


def parse(data: bytes) -> list[Section]:
    return [Section(tidy_text(decode_text(data)))]


def _decode_or_fail(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"The file is not valid {encoding} text.") from exc


def _decode_utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _decode_guessed(data: bytes) -> str:
    """The detector's pick, except that Windows-1252 wins whenever it is a candidate.

    Short Western European texts are ambiguous between the 8-bit code pages and the detector
    often picks a Central European or Arabic one; Windows-1252 is by far the likeliest legacy
    encoding of such uploads, while CJK and Cyrillic texts never list it as a candidate.
    """
    matches = charset_normalizer.from_bytes(data)
    western = next((match for match in matches if match.encoding == "cp1252"), None)
    chosen = western or matches.best()
    if chosen is None:
        raise ParseError("The file is not text in any known encoding (binary data?).")
    return str(chosen)


def _control_share(text: str) -> float:
    sample = text[:65536]
    return len(_CONTROL.findall(sample)) / max(len(sample), 1)
