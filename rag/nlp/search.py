"""Hybrid retrieval over the doc store (``Dealer``) and citation markers for answers.

Synchronous on purpose: the chat path runs ``Dealer.retrieval`` in a worker thread and hands it
the question's embedding model through ``SyncLLMWrapper``, so nothing here touches the loop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np

from rag.nlp import highlight as highlight_text
from rag.nlp import stem, tokens
from rag.nlp.feedback import FEEDBACK_STRENGTH
from rag.nlp.query import STOPWORDS, FulltextQueryer
from rag.utils.doc_store_conn import (
    SCORE,
    DocStoreConnection,
    FusionExpr,
    MatchDenseExpr,
    SearchResult,
    index_name,
    vector_field,
)

RANKING_FIELDS = ["id", "doc_id", "docnm_kwd", "kb_id"]
CHUNK_FIELDS = [
    "id", "content_with_weight", "doc_id", "docnm_kwd", "kb_id", "important_kwd", "question_kwd",
    "tag_kwd", "position_int", "page_num_int", "img_id", "token_num_int",
]
STEMMED_TEXTS = 4096  # chunk texts whose stems ``insert_citations`` remembers
RERANK_LIMIT = 64  # candidates a rerank model scores: enough for any sane page, cheap enough


class QueryEncoder(Protocol):
    def encode_queries(self, text: str) -> tuple[np.ndarray, int]: ...


class Reranker(Protocol):
    def similarity(self, query: str, texts: list[str]) -> tuple[np.ndarray, int]: ...


class EmbeddedQuestion:
    """The query encoder of a search whose question was embedded before the search started.

    Retrieval in a worker thread asking a *sync* model through the bundle would need a second
    worker thread while holding the first; with every worker holding a retrieval, none is left
    to embed and all wait until the timeout. Embedding first, on the loop, breaks that cycle,
    and lets a search run in another process (``rag.nlp.search_processes``).
    """

    def __init__(self, question: str, vector: np.ndarray, tokens: int) -> None:
        self.question = question
        self.vector = vector
        self.tokens = tokens

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        if text != self.question:
            raise ValueError("EmbeddedQuestion only knows the question it was built for")
        return self.vector, self.tokens


class QuestionBeingEmbedded:
    """The query encoder of a search whose question is still being embedded on another thread.

    The search starts at once and reads the vector only where it needs it, so a store that can
    run its text leg without the vector (SQLite) does that on one core while the model runs on
    the other: what a search process does with a lone new question (``rag.nlp.search_processes``).
    """

    def __init__(self, question: str, vector: Future, dimension: int, tokens: int) -> None:
        self.question = question
        self.vector = vector  # resolves to the question's float32 vector of ``dimension`` values
        self.dimension = dimension
        self.tokens = tokens

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        if text != self.question:
            raise ValueError("QuestionBeingEmbedded only knows the question it was built for")
        return self.vector.result(), self.tokens


def empty_result() -> dict[str, Any]:
    return {"total": 0, "chunks": [], "doc_aggs": []}


class Dealer:
    """Hybrid retrieval: BM25 and cosine kNN fetched independently, then weighted.

    ``similarity = w·vector_similarity + (1−w)·term_similarity`` with ``w`` the caller's
    ``vector_similarity_weight``, as in RAGFlow. ``vector_similarity`` is the raw cosine and
    ``term_similarity`` BM25 over the most the question's terms could score, both computed the
    same way on every backend (``rag.nlp.similarity``). Neither depends on the other candidates,
    so ``similarity_threshold`` 0.2 drops a nonsense question's chunks as it does in RAGFlow.
    A rerank model's score takes the vector part's place (RAGFlow's ``rerank_by_model``).

    At 0 < w < 1 and without a rerank model, ``feedback`` > 0 asks the vector part again from the
    question moved toward the chunk the swapped weights rank first (``rag.nlp.feedback``): it
    reorders, while ``vector_similarity`` keeps reporting the raw cosine. 0 gives RAGFlow's sum.
    """

    def __init__(self, doc_store: DocStoreConnection, queryer: FulltextQueryer | None = None,
                 feedback: float = FEEDBACK_STRENGTH) -> None:
        self.doc_store = doc_store
        self.queryer = queryer or FulltextQueryer()
        self.feedback = feedback  # cross-leg feedback strength (rag.nlp.feedback); 0 turns it off

    def retrieval(
        self,
        question: str,
        embd_mdl: QueryEncoder,
        tenant_ids: str | Sequence[str],
        kb_ids: Sequence[str],
        page: int,
        page_size: int,
        similarity_threshold: float = 0.2,
        vector_similarity_weight: float = 0.3,
        top: int = 1024,
        doc_ids: Sequence[str] | None = None,
        rerank_mdl: Reranker | None = None,
        highlight: bool = False,
        aggs: bool = True,
    ) -> dict[str, Any]:
        """The page of chunks at or above ``similarity_threshold``, their ``total`` and ``doc_aggs``:
        chunks per document over every chunk kept (``aggs``, as ``/retrieval`` reports them) or
        over the page's only. Without ``aggs`` and a rerank model the store hands back just the
        page: a chat, which asks for its ``top_n`` (RAGFlow's chat passes ``aggs=False`` too), no
        longer has every candidate above the threshold built as a row (a quarter of a search
        child's time under chat_load)."""
        if not question or not question.strip() or not kb_ids:
            return empty_result()
        if isinstance(tenant_ids, str):
            tenant_ids = tenant_ids.split(",")
        indexes = [index_name(t) for t in tenant_ids]
        top = max(int(top), 1)
        # Without a rerank model the threshold can be applied inside the store, which then
        # materialises only the rows that survive it.
        floor = 0.0 if rerank_mdl is not None else similarity_threshold
        # A rerank model's score replaces the vector part, so feeding back into it would be lost.
        feedback = 0.0 if rerank_mdl is not None else self.feedback
        fusion = FusionExpr(vector_similarity_weight, 2 * top, min_score=floor, feedback=feedback)
        start = max(page - 1, 0) * page_size
        kept: list[dict] | None = None  # every chunk above the threshold, when they are needed
        contents: dict[str, dict] | None = None  # the page's chunk fields, when the ranking read them
        if rerank_mdl is None and not aggs and page_size > 0:
            # A store that reads only the page's rows hands them over whole in the ranking
            # itself: one search instead of a ranking and then a fetch by id.
            whole_page = self.doc_store.ranks_then_reads_the_page
            found, terms = self._rank(question, embd_mdl, indexes, list(kb_ids), doc_ids, top, fusion, start,
                                      page_size, CHUNK_FIELDS if whole_page else RANKING_FIELDS)
            page_rows, total = found.rows, found.total
            if whole_page:
                contents = {row["id"]: row for row in page_rows}
        else:
            found, terms = self._rank(question, embd_mdl, indexes, list(kb_ids), doc_ids, top, fusion, 0, fusion.topn)
            ranked = found.rows
            if rerank_mdl is not None:
                ranked = self._rerank(question, rerank_mdl, ranked, indexes, kb_ids, vector_similarity_weight)
            kept = [row for row in ranked if row[SCORE] >= similarity_threshold]
            page_rows, total = kept[start : start + page_size], len(kept)
        chunks = self._chunks(page_rows, indexes, kb_ids, terms if highlight else None, contents)
        return {"total": total, "chunks": chunks, "doc_aggs": doc_aggs(kept if aggs and kept is not None else chunks)}

    def _rank(self, question, embd_mdl, indexes, kb_ids, doc_ids, top, fusion: FusionExpr, offset: int, limit: int,
              fields: list[str] = RANKING_FIELDS) -> tuple[SearchResult, list[str]]:
        """Rows ``offset:offset + limit`` of the candidates of both legs with ``fields`` and their
        three scores, best first, and how many there are."""
        text_expr, terms = self.queryer.question(question, top)
        dense_expr = dense_match(question, embd_mdl, top)
        exprs = [e for e in (text_expr, dense_expr) if e is not None]
        condition: dict[str, Any] = {"available_int": 1}
        if doc_ids:
            condition["doc_id"] = list(doc_ids)
        result = self.doc_store.search(fields, [], condition, [*exprs, fusion], None, offset, limit, indexes, kb_ids)
        return result, list(terms.terms)

    def _rerank(self, question, rerank_mdl, ranked, indexes, kb_ids, weight) -> list[dict]:
        """The model's score replaces the vector part for the best ``RERANK_LIMIT`` candidates."""
        head, tail = ranked[:RERANK_LIMIT], ranked[RERANK_LIMIT:]
        if not head:
            return ranked
        contents = self._fetch([row["id"] for row in head], indexes, kb_ids)
        texts = [contents.get(row["id"], {}).get("content_with_weight", "") for row in head]
        scores, _ = rerank_mdl.similarity(question, texts)
        for row, score in zip(head, np.asarray(scores, dtype=float).tolist(), strict=True):
            row["vector_similarity"] = min(max(score, 0.0), 1.0)
            row[SCORE] = weight * row["vector_similarity"] + (1 - weight) * row["term_similarity"]
        head.sort(key=lambda row: row[SCORE], reverse=True)
        for row in tail:  # unscored by the model: never above a scored candidate
            row[SCORE] = min(row[SCORE], head[-1][SCORE])
        return head + tail

    def _fetch(self, ids: list[str], indexes: list[str], kb_ids: Sequence[str]) -> dict[str, dict]:
        if not ids:
            return {}
        found = self.doc_store.search(CHUNK_FIELDS, [], {"id": ids}, [], None, 0, len(ids), indexes, list(kb_ids))
        return {row["id"]: row for row in found.rows}

    def _chunks(self, page_rows, indexes, kb_ids, terms: list[str] | None,
                contents: dict[str, dict] | None = None) -> list[dict[str, Any]]:
        """The page as chunks, with their fields from ``contents`` (chunk id → row) or, when not
        given, fetched by id."""
        if contents is None:
            contents = self._fetch([row["id"] for row in page_rows], indexes, kb_ids)
        chunks = []
        for row in page_rows:
            full = contents.get(row["id"])
            if full is None:
                continue
            chunk = {
                "chunk_id": row["id"],
                "content_with_weight": full.get("content_with_weight", ""),
                "doc_id": full.get("doc_id", ""),
                "docnm_kwd": full.get("docnm_kwd", ""),
                "kb_id": full.get("kb_id", ""),
                "important_kwd": full.get("important_kwd") or [],
                "question_kwd": full.get("question_kwd") or [],
                "tag_kwd": full.get("tag_kwd") or [],
                "image_id": full.get("img_id", ""),
                "similarity": round(float(row[SCORE]), 6),
                "vector_similarity": round(float(row.get("vector_similarity", 0.0)), 6),
                "term_similarity": round(float(row.get("term_similarity", 0.0)), 6),
                "positions": full.get("position_int") or [],
                "token_count": full.get("token_num_int"),  # None for chunks indexed before it was stored
            }
            if terms is not None:
                chunk["highlight"] = highlight_text(chunk["content_with_weight"], terms)
            chunks.append(chunk)
        return chunks


def dense_match(question: str, embd_mdl: QueryEncoder, top: int) -> MatchDenseExpr:
    """The kNN leg's expression: with the vector itself, or with the one still being computed."""
    if isinstance(embd_mdl, QuestionBeingEmbedded):
        return MatchDenseExpr(vector_field(embd_mdl.dimension), embd_mdl.vector, top)
    query_vector, _ = embd_mdl.encode_queries(question)
    query_vector = np.asarray(query_vector, dtype=np.float32).ravel()
    return MatchDenseExpr(vector_field(query_vector.size), tuple(query_vector.tolist()), top)


def doc_aggs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks per document among the retrieved rows, most first (RAGFlow's ``doc_aggs``)."""
    counts: dict[str, dict[str, Any]] = {}
    for row in rows:
        agg = counts.setdefault(row.get("doc_id", ""), {"doc_name": row.get("docnm_kwd", ""),
                                                        "doc_id": row.get("doc_id", ""), "count": 0})
        agg["count"] += 1
    return sorted(counts.values(), key=lambda agg: agg["count"], reverse=True)


_CITATION = re.compile(r"\[ID:\s*\d+\]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；])\s+|\n+")
_CODE_BLOCK = re.compile(r"```.*?```", re.S)


def split_sentences(answer: str) -> list[str]:
    """The answer in pieces whose concatenation is the answer; code blocks stay whole."""
    pieces, last = [], 0
    for block in _CODE_BLOCK.finditer(answer):
        pieces.extend(_split_prose(answer[last : block.start()]))
        pieces.append(block.group(0))
        last = block.end()
    pieces.extend(_split_prose(answer[last:]))
    return [p for p in pieces if p]


def _split_prose(text: str) -> list[str]:
    pieces, last = [], 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[last : match.end()])
        last = match.end()
    pieces.append(text[last:])
    return pieces


@functools.lru_cache(maxsize=STEMMED_TEXTS)
def _content_stems(text: str) -> frozenset[str]:
    """Stems of the text's content words; remembered, since the chunks that answer one
    question answer many (stemming a chunk's every word was most of ``insert_citations``)."""
    return frozenset(stem(t) for t in tokens(text) if t not in STOPWORDS)


def _overlap(words: frozenset[str], chunk_stems: frozenset[str]) -> float:
    """Share of the sentence's content words (``words``) that occur in the chunk, in [0, 1]."""
    return len(words & chunk_stems) / len(words) if words else 0.0


def insert_citations(
    answer: str,
    chunks: Sequence[dict[str, Any]],
    embd_mdl: Any | None = None,
    chunk_vectors: Sequence[Sequence[float]] | None = None,
    term_weight: float = 0.1,
    vector_weight: float = 0.9,
    max_per_sentence: int = 2,
) -> tuple[str, set[int]]:
    """``answer`` with ``[ID:n]`` after each sentence that a chunk supports, and the cited n.

    An answer that already cites anything is returned as is: the model's own citations win.
    With an embedding model and the chunks' vectors, support is ``term_weight·overlap +
    vector_weight·cosine`` (RAGFlow's weights); without, it is the word overlap alone. The
    threshold starts strict and relaxes until at least one sentence is cited.
    """
    if not answer or not chunks or _CITATION.search(answer):
        return answer, set()
    pieces = split_sentences(answer)
    prose = [i for i, p in enumerate(pieces) if not p.startswith("```") and len(tokens(p)) >= 3]
    if not prose:
        return answer, set()
    support = _support_matrix([pieces[i] for i in prose], chunks, embd_mdl, chunk_vectors,
                              term_weight, vector_weight)
    for threshold in (0.63, 0.55, 0.45, 0.35, 0.3):
        cites = _pick(support, threshold, max_per_sentence)
        if any(cites):
            break
    cited: set[int] = set()
    for row, piece_index in enumerate(prose):
        if cites[row]:
            piece = pieces[piece_index]
            stripped = piece.rstrip()
            marks = "".join(f" [ID:{n}]" for n in cites[row])
            pieces[piece_index] = stripped + marks + piece[len(stripped):]
            cited.update(cites[row])
    return "".join(pieces), cited


def _support_matrix(sentences, chunks, embd_mdl, chunk_vectors, term_weight, vector_weight) -> np.ndarray:
    """Support of each chunk (columns) for each sentence (rows)."""
    chunk_stems = [_content_stems(str(c.get("content_with_weight") or c.get("content") or "")) for c in chunks]
    sentence_stems = [_content_stems(s) for s in sentences]
    overlap = np.array([[_overlap(ss, cs) for cs in chunk_stems] for ss in sentence_stems], dtype=float)
    if embd_mdl is None or chunk_vectors is None or len(chunk_vectors) != len(chunks):
        return overlap
    sentence_vecs, _ = embd_mdl.encode(sentences)
    a = np.asarray(sentence_vecs, dtype=np.float32)
    b = np.asarray(chunk_vectors, dtype=np.float32)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return term_weight * overlap + vector_weight * (a @ b.T)


def _pick(support: np.ndarray, threshold: float, max_per_sentence: int) -> list[list[int]]:
    """Per sentence, the chunks above ``threshold`` and within 1% of its best, at most N."""
    picks = []
    for row in support:
        best = float(row.max(initial=0.0))
        order = [int(j) for j in np.argsort(-row) if row[j] >= threshold and row[j] >= 0.99 * best]
        picks.append(order[:max_per_sentence])
    return picks
