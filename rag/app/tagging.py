"""Tagging a dataset's chunks from tag sets (``parser_config.tag_kb_ids``) at parse time.

A tag set is a dataset parsed with ``chunk_method`` tag (``rag.app.tag``): each of its rows is
a description (the chunk's content) and its tags (``tag_kwd``, also ``important_kwd``). A
dataset naming tag sets in ``tag_kb_ids`` gets every chunk tagged as RAGFlow tags it: the tag
sets' rows are searched (BM25) with the chunk's words, and the tags of the best-matching rows
are kept, at most ``topn_tags`` (default 3) per chunk, in the chunk's ``tag_kwd``.

How tags are ranked: each of the ``MATCH_ROWS`` best rows adds its BM25 score to every tag it
carries, and the tags with the largest sums win (ties: the better row's tag first). A tag that
several well-matching rows agree on beats one of a single row. RAGFlow additionally divides by
a tag's share of the whole tag set and falls back to an LLM for chunks no row matches; Ragline
leaves such chunks untagged (no LLM is needed to parse), and ranks by the match alone.

Nothing here knows where the rows live: ``TagSearch`` is any function from match terms to
``(tags, score)`` rows, and ``store_search`` builds one over a ``DocStoreConnection``. Which
datasets are usable tag sets (this tenant's, ``chunk_method`` tag, parsed) is the caller's
check: the worker (``rag.svr.task_executor``) skips the others with a line in ``progress_msg``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rag.app.naive import ChunkText
from rag.nlp import tokens
from rag.nlp.query import STOPWORDS
from rag.utils.doc_store_conn import SCORE, DocStoreConnection, MatchTextExpr

DEFAULT_TOPN_TAGS = 3
MAX_TOPN_TAGS = 10
MATCH_ROWS = 16  # best-matching tag-set rows whose tags are counted
MATCH_TERMS = 64  # a chunk's most frequent words that are searched for
# A tag set's description is what a chunk resembles; its tags are words a chunk may use too.
MATCH_FIELDS = ("content_ltks", "important_tks^2")

TagSearch = Callable[[str, int], list[tuple[list[str], float]]]
"""``(match terms, rows wanted) -> [(tags of a row, its score), ...]``, best row first."""


def topn_tags(parser_config: dict[str, Any] | None) -> int:
    """``parser_config.topn_tags`` within 1–10; the default (3) when unset or unreadable."""
    value = (parser_config or {}).get("topn_tags")
    try:
        number = int(value)
    except (TypeError, ValueError):
        return DEFAULT_TOPN_TAGS
    return min(max(number, 1), MAX_TOPN_TAGS)


def tag_set_ids(parser_config: dict[str, Any] | None) -> list[str]:
    """``parser_config.tag_kb_ids`` as distinct ids (a list, or one comma-separated string)."""
    value = (parser_config or {}).get("tag_kb_ids") or []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return []
    return list(dict.fromkeys(str(item).strip() for item in value if str(item).strip()))


def match_terms(text: str, limit: int = MATCH_TERMS) -> str:
    """The chunk's ``limit`` most frequent words that are not stopwords (first seen first on ties)."""
    counts = Counter(word for word in tokens(text) if word not in STOPWORDS)
    return " ".join(word for word, _ in counts.most_common(limit))


def best_tags(rows: Sequence[tuple[Sequence[str], float]], topn: int) -> tuple[str, ...]:
    """The ``topn`` tags with the largest summed scores over ``rows`` (best row first)."""
    weights: dict[str, float] = {}
    for tags, score in rows:
        for tag in dict.fromkeys(tags):
            weights[tag] = weights.get(tag, 0.0) + max(float(score), 0.0)
    ranked = sorted(weights.items(), key=lambda item: -item[1])  # stable: first-met order on ties
    return tuple(tag for tag, weight in ranked[:topn] if weight > 0)


def tags_for(text: str, search: TagSearch, topn: int) -> tuple[str, ...]:
    """The tags ``text`` gets from the rows ``search`` finds for it; ``()`` when none match."""
    terms = match_terms(text)
    if not terms:
        return ()
    return best_tags(search(terms, MATCH_ROWS), topn)


def tag_chunks(chunks: Sequence[ChunkText], search: TagSearch, topn: int) -> list[ChunkText]:
    """The chunks with their tags; a chunk that has tags already (a tag set's row) keeps them."""
    tagged = []
    for piece in chunks:
        if not piece.tags:
            tags = tags_for(piece.match_text or piece.content, search, topn)
            if tags:
                piece = dataclasses.replace(piece, tags=tags)
        tagged.append(piece)
    return tagged


def store_search(store: DocStoreConnection, index: str, kb_ids: list[str]) -> TagSearch:
    """A ``TagSearch`` over the tag sets ``kb_ids`` in the tenant index ``index``."""

    def search(terms: str, rows: int) -> list[tuple[list[str], float]]:
        found = store.search(["tag_kwd"], [], {"available_int": 1}, [MatchTextExpr(MATCH_FIELDS, terms, rows)],
                             None, 0, rows, [index], list(kb_ids))
        return [(list(row.get("tag_kwd") or []), float(row.get(SCORE) or 0.0)) for row in found.rows]

    return search


def tagged_rows(store: DocStoreConnection, index: str, kb_id: str) -> int:
    """How many rows of the tag set ``kb_id`` there are to tag from (0: empty or not parsed yet)."""
    if not store.index_exist(index, kb_id):
        return 0
    return store.search(["id"], [], {}, [], None, 0, 1, [index], [kb_id]).total
