"""Cosine kNN over an in-memory matrix, with the per-row columns filters need.

Kept in step with the database by ``rag.utils.sqlite_index`` (``SqliteIndex.sync``). Rows are
L2-normalised on the way in, so an exact search is one matrix–vector product plus a partial
sort. That reads every row per question: below ``ANN_MIN_ROWS`` live rows it is the fastest
way; above it an HNSW graph (``rag.nlp.ann_index``), built in a background thread the first time
a search finds the matrix that large, proposes candidates that are re-scored exactly, and
searches stay exact until the graph is complete. The crossover was measured with
``tests.bench.retrieval_scale`` (README, "Benchmarks").
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rag.nlp.ann_index import MAX_OVERFETCH, MIN_CANDIDATES, AnnMaintainer

# Live rows from which searches use the approximate index (None: always exact). Measured with top 1024
# (the API default) on SciFact-derived vectors, the vector leg alone: the graph takes 1.7× exact's
# time at 10k rows, 0.56× at 25k, 0.37× at 50k, 0.03× at 1M (README, "Retrieval at scale").
ANN_MIN_ROWS = 20_000
# Below this fraction of the rows a mask's rows are gathered and scored alone instead of scoring every row.
GATHER_FRACTION = 0.25
# Graph over-fetch beyond the filter's own ratio, so a filtered search rarely falls back to exact.
FILTER_SLACK = 1.3


class Nearest(NamedTuple):
    """A vector search's best slots, best first, and their cosines."""

    slots: np.ndarray
    cosines: np.ndarray
    every: np.ndarray | None  # every row's cosine by slot (float32) when the search computed them all


class VectorMatrix:
    """Normalised vectors of one dimension by slot, with rowid, chunk id, dataset, document, availability.

    Deleted slots are marked dead and reused; growth doubles capacity so appends are amortised.
    ``ann_min_rows`` is where the approximate index takes over (None: never); ``ann_path``, where
    its graph is saved for other processes and restarts (``rag.nlp.ann_index.GraphFile``; None:
    each process builds its own). Writes hold ``lock``, which the approximate index's background
    thread also takes to read rows.
    """

    def __init__(self, dim: int, ann_min_rows: int | None = ANN_MIN_ROWS, ann_path: Path | None = None) -> None:
        self.dim = dim
        self.ann_min_rows = ann_min_rows
        self.ann_path = ann_path
        self.ann: AnnMaintainer | None = None
        self.lock = threading.Lock()
        self.live_count = 0
        self.mat = np.zeros((0, dim), dtype=np.float32)
        self.rowids = np.zeros(0, dtype=np.int64)
        self.kb = np.zeros(0, dtype=np.int32)
        self.doc = np.zeros(0, dtype=np.int32)
        self.available = np.zeros(0, dtype=bool)
        self.live = np.zeros(0, dtype=bool)
        self.ids: list[str] = []
        self.slot_of: dict[int, int] = {}
        self.free: list[int] = []
        self.size = 0

    def _grow(self) -> None:
        """1.5× capacity. The new matrix is left unwritten past the used rows, so the spare
        capacity costs address space, not resident memory, until rows arrive."""
        capacity = max(1024, len(self.rowids) * 3 // 2)
        extra = capacity - len(self.rowids)
        mat = np.empty((capacity, self.dim), dtype=np.float32)
        mat[: self.size] = self.mat[: self.size]
        self.mat = mat
        for name in ("rowids", "kb", "doc", "available", "live"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros(extra, dtype=old.dtype)]))
        self.ids.extend([""] * extra)

    def put(self, rowid: int, chunk_id: str, vec: np.ndarray, kb: int, doc: int, available: bool) -> None:
        with self.lock:
            self._put(rowid, chunk_id, vec, kb, doc, available)

    def _put(self, rowid: int, chunk_id: str, vec: np.ndarray, kb: int, doc: int, available: bool) -> None:
        slot = self.slot_of.get(rowid)
        if slot is None:
            if self.free:
                slot = self.free.pop()
            else:
                if self.size == len(self.rowids):
                    self._grow()
                slot, self.size = self.size, self.size + 1
            self.slot_of[rowid] = slot
            self.live_count += 1
        if self.ann is not None:
            self.ann.changed(slot)
        norm = float(np.linalg.norm(vec))
        self.mat[slot] = vec / norm if norm > 0 else vec
        self.rowids[slot], self.kb[slot], self.doc[slot] = rowid, kb, doc
        self.available[slot], self.live[slot] = available, True
        self.ids[slot] = chunk_id

    def remove(self, rowid: int) -> None:
        with self.lock:
            slot = self.slot_of.pop(rowid, None)
            if slot is not None:
                self.live[slot] = False
                self.free.append(slot)
                self.live_count -= 1
                if self.ann is not None:
                    self.ann.changed(slot)

    def cosines(self, query: np.ndarray, slots: np.ndarray, every: np.ndarray | None = None) -> np.ndarray:
        """Cosine of the given slots with the normalised ``query`` (nan where a slot is -1):
        read from ``every`` (all rows' cosines with this query, ``Nearest.every``) when given,
        else computed from the rows: those rows alone when they are few, else every row in
        one product, as ``_exact`` decides (a feedback question's 1,500-2,000 candidates among
        5,583 rows cost 270-420 µs gathered against 170-190 µs for the whole product)."""
        slots = np.asarray(slots, dtype=np.int64)
        size = self.size if every is None else min(self.size, every.size)
        valid = (slots >= 0) & (slots < size)
        out = np.full(slots.size, np.nan, dtype=np.float64)
        wanted = slots[valid]
        if wanted.size == 0:
            return out
        if every is None:
            every = self.mat[: self.size] @ query if wanted.size >= GATHER_FRACTION * self.size else None
        out[valid] = self.mat[wanted] @ query if every is None else every[wanted]
        return out

    def nearest(self, query: np.ndarray, topn: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots of the ``topn`` rows nearest the normalised ``query`` where ``mask`` holds, best
        first, and their exact cosines: from the approximate index when it is in use and the
        mask keeps enough rows for it, else exact."""
        return self.scored_nearest(query, topn, mask)[:2]

    def scored_nearest(self, query: np.ndarray, topn: int, mask: np.ndarray) -> Nearest:
        """``nearest``, with every row's cosine when the search computed them all anyway, so the
        other leg's hits read theirs instead of gathering their rows for a second product (a
        quarter of a millisecond per 1,000 hits)."""
        if self.ann_min_rows is not None and self.live_count >= self.ann_min_rows:
            found = self._nearest_ann(query, topn, mask)
            if found is not None:
                return Nearest(*found, None)
        return self._exact(query, topn, mask)

    def nearest_exact(self, query: np.ndarray, topn: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``nearest`` by scoring every row ``mask`` keeps: all rows in one product, or only the
        kept ones when a filter keeps few."""
        return self._exact(query, topn, mask)[:2]

    def _exact(self, query: np.ndarray, topn: int, mask: np.ndarray) -> Nearest:
        mask = mask[: self.size]
        allowed = np.flatnonzero(mask)
        if allowed.size < GATHER_FRACTION * self.size:
            return Nearest(*self._best(allowed, self.mat[allowed] @ query, topn), None)
        scores = self.mat[: self.size] @ query
        best = self.top(scores, topn, mask)
        return Nearest(best, scores[best].astype(np.float64), scores)

    def _nearest_ann(self, query: np.ndarray, topn: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Graph candidates plus rows the graph does not hold yet, re-scored exactly; None when the
        graph is not ready or the mask keeps too few rows for over-fetching to find ``topn``.

        Holds ``lock`` throughout (the background thread takes it only between its graph adds),
        so the graph's entry maps cannot move between the graph search and the pending rows."""
        with self.lock:
            if self.ann is None:
                self.ann = AnnMaintainer(self.dim, self.lock, self, self.ann_path)
            ann = self.ann
            ann.want(self.live_count)
            if ann.graph is None or topn <= 0:
                return None
            size = min(self.size, mask.size)
            mask = mask[:size]
            allowed = int(np.count_nonzero(mask))
            fetch = max(topn, MIN_CANDIDATES)
            if allowed < self.live_count:  # a filter: ask for more, as some neighbours will not pass it
                fetch = int(fetch * FILTER_SLACK * self.live_count / max(allowed, 1))
            if allowed == 0 or fetch > MAX_OVERFETCH * max(topn, MIN_CANDIDATES) or fetch >= allowed:
                return None
            found = ann.graph.search(query, fetch)
            found = found[found < size]
            candidates = np.concatenate([found[mask[found]], ann.pending(size, mask)])
        if candidates.size < min(topn, allowed):
            return None
        return self._best(candidates, self.mat[candidates] @ query, topn)

    def _best(self, slots: np.ndarray, scores: np.ndarray, topn: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``topn`` best of ``slots`` by ``scores``, best first, with their scores."""
        order = self.top(scores, topn, np.ones(scores.size, dtype=bool))
        return slots[order], scores[order].astype(np.float64)

    def marked(self, slots: np.ndarray) -> np.ndarray:
        """A flag per slot of the matrix, set for ``slots`` (-1, no slot, is skipped)."""
        flags = np.zeros(self.size, dtype=bool)
        flags[slots[(slots >= 0) & (slots < self.size)]] = True
        return flags

    # -- what the approximate index reads (``rag.nlp.ann_index.Rows``), with ``lock`` held --

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        return self.mat[slots]

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self.size])

    def rowids_of(self, slots: np.ndarray) -> np.ndarray:
        return self.rowids[slots]

    def wait_for_ann(self, timeout: float | None = None) -> bool:
        """Block until the approximate index's background work is done (tests, benchmarks)."""
        return self.ann is None or self.ann.wait(timeout)

    def slots(self, rowids: list[int] | np.ndarray) -> np.ndarray:
        """Slot of each rowid, -1 where the row has no vector here."""
        rowids = rowids.tolist() if isinstance(rowids, np.ndarray) else rowids
        return np.fromiter((self.slot_of.get(r, -1) for r in rowids), dtype=np.int64, count=len(rowids))

    @staticmethod
    def top(scores: np.ndarray, topn: int, mask: np.ndarray) -> np.ndarray:
        """Slots of the ``topn`` best scores where ``mask`` holds, best first."""
        allowed = np.flatnonzero(mask[: scores.size])
        if allowed.size == 0 or topn <= 0:
            return allowed[:0]
        kept = scores[allowed]
        k = min(topn, kept.size)
        best = np.argpartition(-kept, k - 1)[:k] if k < kept.size else np.arange(kept.size)
        return allowed[best[np.argsort(-kept[best], kind="stable")]]
