"""Exact cosine kNN over an in-memory matrix, with the per-row columns filters need.

Kept in step with the database by ``rag.utils.sqlite_index`` (``SqliteIndex.sync``). Rows are
L2-normalised on the way in, so a search is one matrix–vector product plus a partial sort; at 100k×384 that is a few
milliseconds and ~150 MB, which beats an approximate index on both recall and simplicity.
"""

from __future__ import annotations

import numpy as np


class VectorMatrix:
    """Normalised vectors of one dimension by slot, with rowid, chunk id, dataset, document, availability.

    Deleted slots are marked dead and reused; growth doubles capacity so appends are amortised.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
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
        slot = self.slot_of.get(rowid)
        if slot is None:
            if self.free:
                slot = self.free.pop()
            else:
                if self.size == len(self.rowids):
                    self._grow()
                slot, self.size = self.size, self.size + 1
            self.slot_of[rowid] = slot
        norm = float(np.linalg.norm(vec))
        self.mat[slot] = vec / norm if norm > 0 else vec
        self.rowids[slot], self.kb[slot], self.doc[slot] = rowid, kb, doc
        self.available[slot], self.live[slot] = available, True
        self.ids[slot] = chunk_id

    def remove(self, rowid: int) -> None:
        slot = self.slot_of.pop(rowid, None)
        if slot is not None:
            self.live[slot] = False
            self.free.append(slot)

    def cosines(self, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Cosine of the given slots with the normalised ``query`` (nan where a slot is -1)."""
        slots = np.asarray(slots, dtype=np.int64)
        valid = (slots >= 0) & (slots < self.size)
        out = np.full(slots.size, np.nan, dtype=np.float64)
        if valid.any():
            out[valid] = self.mat[slots[valid]] @ query
        return out

    def nearest(self, query: np.ndarray, topn: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots of the ``topn`` rows nearest the normalised ``query`` where ``mask`` holds, best
        first, and their cosines. Exact: one matrix-vector product over the used rows."""
        scores = self.mat[: self.size] @ query
        best = self.top(scores, topn, mask)
        return best, scores[best].astype(np.float64)

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
