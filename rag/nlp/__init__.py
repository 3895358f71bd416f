"""Text helpers shared by ingestion and retrieval.

``tokenize`` fills the ``*_ltks`` fields of a chunk. Both backends stem and lower-case again in
their own analysers (FTS5 porter/unicode61, Elasticsearch's mapping), so the tokens here only
have to agree with how questions are split in ``rag.nlp.query``: one function for both sides.
"""

from __future__ import annotations

import functools
import re

# Letters/digits runs; CJK ideographs and kana stand alone because they carry no spaces.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``; punctuation, symbols and emoji are dropped."""
    return _TOKEN.findall(text.lower()) if text else []


def tokenize(text: str) -> str:
    """Space-joined tokens of ``text``: the value for ``content_ltks``, ``title_tks`` etc."""
    return " ".join(tokens(text))


_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "ied", "ly", "es", "ed", "s")


@functools.lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """A light suffix-stripping stem, enough to see that "cells" answers "cell" in highlights.
    Remembered: a language has few words, and citations stem every word of every chunk."""
    for suffix in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)]
    return token


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def highlight(text: str, query_tokens: list[str], tag: str = "em") -> str:
    """``text`` with every word that matches a query token (after ``stem``) wrapped in ``<tag>``."""
    wanted = {stem(t) for t in query_tokens}
    if not wanted or not text:
        return text
    return _WORD.sub(
        lambda m: f"<{tag}>{m.group(0)}</{tag}>" if stem(m.group(0).lower()) in wanted else m.group(0), text
    )
