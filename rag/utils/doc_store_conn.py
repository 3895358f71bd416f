"""The chunk store contract every backend (SQLite, Elasticsearch) fulfils, and its expressions.

Chunks travel as plain dicts with RAGFlow's suffix-typed field names (``*_kwd`` keyword,
``*_ltks`` tokenised text, ``*_int``/``*_flt`` numbers, ``q_<dim>_vec`` dense vector), so the
same row goes to either backend unchanged. One index per tenant; a dataset is a ``kb_id``
filter inside it.

Search is expressed with small typed expressions rather than a backend's query language, so the
retrieval code (``rag.nlp.search.Dealer``) never builds SQL or Elasticsearch JSON itself. When a
search carries both a text and a dense match, each backend runs the two legs *independently*
(the vector leg is not filtered by the text match), unions the candidates and reports both raw
scores per row; the score maths (raw cosine, BM25 over its ceiling, the weighted sum) lives in
``rag.nlp.similarity``, once, so a similarity threshold means the same thing on every backend.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.nlp import tokenize
from rag.utils.token_utils import num_tokens

INDEX_PREFIX = "ragline_"

# Keys of the per-row score fields a backend adds to search results.
TERM_SCORE = "_term_score"  # raw full-text score (BM25); 0.0 when the text leg did not return the row
VECTOR_SCORE = "_vector_score"  # cosine similarity in [-1, 1]; 0.0 when unknown
SCORE = "_score"  # the fused similarity when a FusionExpr was given, else the leg's raw score

# Condition keys every backend understands; values are a scalar or a list (any of).
CONDITION_KEYS = ("id", "kb_id", "doc_id", "available_int")


def index_name(tenant_id: str) -> str:
    """The one index that holds all chunks of a tenant."""
    return f"{INDEX_PREFIX}{tenant_id}"


def vector_field(dim: int) -> str:
    """Name of the dense-vector field for embeddings of ``dim`` dimensions."""
    return f"q_{int(dim)}_vec"


def vector_dim(field_name: str) -> int | None:
    """Inverse of ``vector_field``: the dimension, or None when the name is not a vector field."""
    parts = field_name.split("_")
    if len(parts) == 3 and parts[0] == "q" and parts[2] == "vec" and parts[1].isdigit():
        return int(parts[1])
    return None


def chunk_id(doc_id: str, content: str) -> str:
    """Deterministic 32-hex id, so a retried ingestion overwrites instead of duplicating."""
    return hashlib.blake2b(f"{doc_id}\x00{content}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class MatchTextExpr:
    """Full-text (BM25) match of ``matching_text`` over ``fields`` (``name^boost`` allowed).

    ``matching_text`` is user text or space-separated terms; backends never pass it to their
    query syntax raw. ``topn`` bounds the candidates this leg returns.
    """

    fields: tuple[str, ...]
    matching_text: str
    topn: int
    extra_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchDenseExpr:
    """Exact/approximate cosine kNN of ``embedding_data`` against ``vector_column_name``.

    ``embedding_data`` may still be being computed on another thread (a ``Future``): a backend
    reads it with ``query_vector`` as late as it can, so work that needs no vector (SQLite's text
    leg) overlaps with embedding the question.
    """

    vector_column_name: str
    embedding_data: tuple[float, ...] | Future
    topn: int
    extra_options: dict[str, Any] = field(default_factory=dict)


def query_vector(expr: MatchDenseExpr, unit: bool = False) -> np.ndarray:
    """``expr``'s vector as float32, scaled to unit length when ``unit`` (what a cosine against
    stored unit vectors needs), waiting for it when it is still being computed."""
    data = expr.embedding_data
    if isinstance(data, Future):
        data = data.result()
    vector = np.asarray(data, dtype=np.float32).ravel()
    return vector / max(float(np.linalg.norm(vector)), 1e-12) if unit else vector


@dataclass(frozen=True)
class FusionExpr:
    """Weighted sum of the normalised legs: ``vector_weight·vector + (1−vector_weight)·term``."""

    vector_weight: float
    topn: int
    method: str = "weighted_sum"
    min_score: float = 0.0  # rows fused below this are dropped (the caller's similarity threshold)
    # Cross-leg feedback strength (``rag.nlp.feedback``); 0 fuses the legs as they are.
    feedback: float = 0.0


MatchExpr = MatchTextExpr | MatchDenseExpr | FusionExpr


@dataclass(frozen=True)
class OrderByExpr:
    """Sort keys as ``(field, descending)`` pairs, applied when no match expression ranks."""

    fields: tuple[tuple[str, bool], ...] = ()

    def asc(self, name: str) -> OrderByExpr:
        return OrderByExpr(self.fields + ((name, False),))

    def desc(self, name: str) -> OrderByExpr:
        return OrderByExpr(self.fields + ((name, True),))


@dataclass
class SearchResult:
    """Rows of one search: ``total`` matching rows, ``rows`` (the page), extras per request.

    Each row holds ``id``, the selected fields and the score fields (``TERM_SCORE``,
    ``VECTOR_SCORE``, ``SCORE``). ``highlights`` maps chunk id → content with ``<em>`` marks;
    ``aggregations`` maps a field → ``[(value, count), ...]`` over all matching rows.
    """

    total: int
    rows: list[dict[str, Any]]
    highlights: dict[str, str] = field(default_factory=dict)
    aggregations: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


class DocStoreError(Exception):
    """A backend failed in a way the caller cannot fix by changing its input."""


@runtime_checkable
class DocStoreConnection(Protocol):
    """All methods are synchronous: async callers use ``asyncio.to_thread``."""

    # True when a ranked search builds only the rows of the page it returns, so asking it for
    # the chunks' text costs no more than a second search by id; False when it reads the fields
    # of every candidate it ranks (Elasticsearch's legs hand back each hit's source).
    ranks_then_reads_the_page: bool

    def create_idx(self, index_name: str, kb_id: str, vector_size: int) -> None: ...

    def delete_idx(self, index_name: str, kb_id: str) -> None:
        """``kb_id`` given: drop that dataset's chunks; ``""``: drop the whole index."""

    def index_exist(self, index_name: str, kb_id: str) -> bool: ...

    def insert(self, rows: list[dict], index_name: str, kb_id: str) -> list[str]:
        """Upsert by ``id``; returns one error string per row that failed (empty: all stored)."""

    def update(self, condition: dict, new_value: dict, index_name: str, kb_id: str) -> bool: ...

    def delete(self, condition: dict, index_name: str, kb_id: str) -> int: ...

    def get(self, chunk_id: str, index_name: str, kb_ids: list[str]) -> dict | None: ...

    def search(
        self,
        select_fields: Sequence[str],
        highlight_fields: Sequence[str],
        condition: dict,
        match_exprs: Sequence[MatchExpr],
        order_by: OrderByExpr | None,
        offset: int,
        limit: int,
        index_names: list[str],
        kb_ids: list[str],
        agg_fields: list[str] | None = None,
    ) -> SearchResult: ...

    def get_total(self, result: SearchResult) -> int: ...

    def health(self) -> dict: ...

    def close(self) -> None: ...


def as_list(value: Any) -> list[Any]:
    """A condition value as a list: scalars become one-element lists."""
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]


def split_match_exprs(
    match_exprs: Iterable[MatchExpr],
) -> tuple[MatchTextExpr | None, MatchDenseExpr | None, FusionExpr | None]:
    """The (at most one each) text, dense and fusion expressions of a search."""
    text = dense = fusion = None
    for expr in match_exprs:
        if isinstance(expr, MatchTextExpr):
            text = expr
        elif isinstance(expr, MatchDenseExpr):
            dense = expr
        elif isinstance(expr, FusionExpr):
            fusion = expr
    return text, dense, fusion


def parse_field_boosts(fields: Iterable[str]) -> dict[str, float]:
    """``["title_tks^10", "content_ltks"]`` → ``{"title_tks": 10.0, "content_ltks": 1.0}``."""
    boosts: dict[str, float] = {}
    for spec in fields:
        name, _, boost = spec.partition("^")
        boosts[name] = float(boost) if boost else 1.0
    return boosts


def important_tokens(important_kwd: Sequence[str], tag_kwd: Sequence[str]) -> str:
    """The full-text twin of a chunk's keywords and tags (what ``important_tks`` holds)."""
    return tokenize(" ".join([*important_kwd, *tag_kwd]))


def title_tokens(docnm_kwd: str, title: str | None = None) -> str:
    """``title_tks``: the file name's words, then the title's words the name does not already
    hold. Each word once, because a name and a title repeating it (``3M_2018_10K.txt``,
    "3M 10k 2018") say one thing, and counted twice it outweighed the body: FinanceBench
    nDCG@10 at w = 0.3, 0.7698 without titles, fell to 0.7674 with the repeats and is 0.7707
    with each word once (SciFact test 0.7435 and 0.7448).
    """
    words = tokenize(" ".join(filter(None, (docnm_kwd.rsplit(".", 1)[0], title)))).split()
    return " ".join(dict.fromkeys(words))


def make_chunk_row(
    doc_id: str,
    kb_id: str,
    docnm_kwd: str,
    content: str,
    vector: Sequence[float],
    *,
    important_kwd: Sequence[str] = (),
    question_kwd: Sequence[str] = (),
    tag_kwd: Sequence[str] = (),
    positions: Sequence[Any] = (),
    create_timestamp: float | None = None,
    token_count: int | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """A chunk dict in the suffix convention, ready for ``insert`` on any backend.

    Ingestion, the chunk API and the benchmark all build rows here so the fields a search reads
    (tokenised text, keyword lists, the vector field named after its dimension) never drift.
    ``token_num_int`` is the content's tiktoken count (``token_count`` when the caller counted
    already): a chat fits retrieved chunks into its prompt from it instead of encoding them on
    every question. Tags are matched with the keywords (``important_tks`` holds both), so a
    search for a tag finds its chunks on every backend. ``title`` is the document's own title
    (``rag.app.naive.document_title``) for a chunk whose text does not hold it: it is matched
    with the file name in ``title_tks``, so the chunk is found by the document's subject.
    """
    stamp = time.time() if create_timestamp is None else create_timestamp
    return {
        "id": chunk_id(doc_id, content),
        "doc_id": doc_id,
        "kb_id": kb_id,
        "docnm_kwd": docnm_kwd,
        "title_tks": title_tokens(docnm_kwd, title),
        "content_with_weight": content,
        "content_ltks": tokenize(content),
        "token_num_int": num_tokens(content) if token_count is None else token_count,
        "important_kwd": list(important_kwd),
        "important_tks": important_tokens(important_kwd, tag_kwd),
        "question_kwd": list(question_kwd),
        "question_tks": tokenize(" ".join(question_kwd)),
        "tag_kwd": list(tag_kwd),
        "available_int": 1,
        "create_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)),
        "create_timestamp_flt": stamp,
        "page_num_int": [int(p[0]) for p in positions] if positions else [],
        "position_int": [list(p) for p in positions],
        vector_field(len(vector)): np.asarray(vector, dtype=np.float32).tolist(),
    }
