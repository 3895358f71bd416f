"""Approximate nearest neighbours (an HNSW graph, usearch) behind ``VectorMatrix.nearest``.

Why: exact kNN reads every stored vector for each question, 1.5 GB of memory traffic at 1M×384,
which is most of a question's time from ~100k rows on; an HNSW graph visits a few thousand rows.
Why usearch: a wheel on PyPI, add and search release the GIL (a build in a background thread
leaves searches running), concurrent add and search are supported, and vectors can be kept as
int8 (a quarter of the float32 matrix) because the graph only proposes candidates: every
candidate is re-scored with its exact cosine from the matrix, so quantisation never changes a
score, only (rarely) which rows are candidates.

Graph keys are *entries*, not slots. Each time a slot's vector goes into the graph it gets a
new entry number; an updated or deleted row is never removed from the graph, its old entry just
stops being the slot's current one and is skipped in results (``stale``). Rows not yet in the
graph (written since it was built) are scored exactly beside it; when they pile up they are
folded in, and when stale entries pass a fraction of the graph a fresh one is built and swapped
in. All of that runs in one background thread per matrix (``AnnMaintainer``), so no search or
write ever waits for a graph to be built.

Given a ``path`` (beside the SQLite file), a built graph is saved there with the rowid of each
entry, under a file lock: the server's search processes and a restarted server load it (seconds
at 1M rows) instead of each building its own (minutes of a core). Loading checks every entry's
vector against the row's current one, so a file older than the database only costs the rows
written since, which are scored exactly and folded in like any new row.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
from usearch.index import Index

log = logging.getLogger(__name__)

# Measured on 1M SciFact-derived vectors (tests.bench.retrieval_scale), recall@10 against exact
# with 1024 rows asked for: M 16 / 64 / 1024 gave 0.967 (0.999 at 100k), M 32 / 64 / 4096
# 0.992, M 16 / 128 / 1024 0.995 at 3.6 ms a question (exact: ~190 ms). Dense blobs of
# near-duplicate rows need the wider insert-time list more than a denser graph.
CONNECTIVITY = 16  # graph degree (M)
EXPANSION_ADD = 128  # candidate list while inserting (ef_construction)
EXPANSION_SEARCH = 1024  # candidate list while searching (ef); usearch widens it to the count asked for
MIN_CANDIDATES = 128  # graph candidates re-scored exactly even when fewer rows are wanted
MAX_OVERFETCH = 8  # a filter keeping less than 1/8 of the rows is answered exactly instead
ADD_BATCH = 4096  # rows per add call, so a rebuild's progress and its swap stay fine-grained
FOLD_MIN = 256  # rows written since the graph was built that are scored exactly before being folded in
STALE_REBUILD = 0.25  # rebuild once this fraction of the graph's entries are stale (updated or deleted rows)
SAME_VECTOR = 0.99  # cosine of a saved (int8) vector with the row's from which it counts as the row's
MIN_LOADED = 0.5  # a saved graph holding fewer of the live rows than this is rebuilt rather than loaded
CHECK_BATCH = 65536  # rows compared per lock hold while loading a saved graph


class Rows(Protocol):
    """What the graph reads of its matrix, always with the matrix's lock held."""

    def vectors(self, slots: np.ndarray) -> np.ndarray: ...  # copies of the rows' vectors

    def live_slots(self) -> np.ndarray: ...

    def rowids_of(self, slots: np.ndarray) -> np.ndarray: ...

    def slots(self, rowids: np.ndarray) -> np.ndarray: ...  # -1 where a rowid has no row


class HnswGraph:
    """A usearch HNSW graph over entries, with the entry↔slot maps that tell which are current."""

    def __init__(self, dim: int, capacity: int, index: Index | None = None) -> None:
        self.index = index or Index(ndim=dim, metric="ip", dtype="i8", connectivity=CONNECTIVITY,
                                    expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        self.entry_slot = np.zeros(0, dtype=np.int64)
        self.slot_entry = np.full(capacity, -1, dtype=np.int64)
        self.entries = 0
        self.current = 0  # entries that are some slot's current one

    def reserve_slots(self, capacity: int) -> None:
        if capacity > self.slot_entry.size:
            grown = np.full(capacity, -1, dtype=np.int64)
            grown[: self.slot_entry.size] = self.slot_entry
            self.slot_entry = grown

    def new_entries(self, slots: np.ndarray) -> np.ndarray:
        """Entry numbers for vectors of ``slots`` about to be added (not yet current)."""
        entries = np.arange(self.entries, self.entries + slots.size, dtype=np.int64)
        self.entries += slots.size
        self.entry_slot = np.concatenate([self.entry_slot, slots.astype(np.int64)])
        return entries

    def add(self, entries: np.ndarray, vectors: np.ndarray) -> None:
        """Insert vectors (no lock needed: usearch allows adds beside searches; GIL released)."""
        if entries.size:
            self.index.add(entries, vectors, threads=1)

    def commit(self, slots: np.ndarray, entries: np.ndarray) -> None:
        """Make the entries their slots' current ones."""
        self.reserve_slots(int(slots.max()) + 1 if slots.size else 0)
        replaced = int((self.slot_entry[slots] >= 0).sum())
        self.slot_entry[slots] = entries
        self.current += slots.size - replaced

    def invalidate(self, slot: int) -> None:
        """The slot's vector changed or went away: its entry, if any, is stale from now on."""
        if slot < self.slot_entry.size and self.slot_entry[slot] >= 0:
            self.slot_entry[slot] = -1
            self.current -= 1

    @property
    def stale(self) -> int:
        return self.entries - self.current

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Slots whose current vector is among the ``count`` graph neighbours of ``query``."""
        if self.entries == 0:
            return np.zeros(0, dtype=np.int64)
        keys = self.index.search(query, count, threads=1).keys.astype(np.int64)
        slots = self.entry_slot[keys]
        keep = slots >= 0
        keys, slots = keys[keep], slots[keep]
        return slots[self.slot_entry[slots] == keys]

    def entry_rowids(self, rows: Rows) -> np.ndarray:
        """Per entry the rowid whose current vector it holds, -1 for stale entries (what is saved)."""
        out = np.full(self.entries, -1, dtype=np.int64)
        slots = np.flatnonzero(self.slot_entry >= 0)
        out[self.slot_entry[slots]] = rows.rowids_of(slots)
        return out

    def memory_bytes(self) -> int:
        return int(self.index.memory_usage) + self.entry_slot.nbytes + self.slot_entry.nbytes


class AnnMaintainer:
    """Keeps an ``HnswGraph`` in step with a matrix from one background thread.

    ``rows`` is read with ``lock`` held, the lock every write to the matrix also holds.
    ``version`` counts writes per slot so rows rewritten while the thread was adding them are not
    taken as current. ``path``: where the graph is saved and looked for (None: never saved).
    """

    def __init__(self, dim: int, lock: threading.Lock, rows: Rows, path: Path | None = None) -> None:
        self.dim = dim
        self.lock = lock
        self.rows = rows
        self.file = GraphFile(path) if path is not None else None
        self.graph: HnswGraph | None = None  # the one searches use, once complete
        self.building: HnswGraph | None = None  # a first graph or a replacement, under construction
        self.version = np.zeros(0, dtype=np.int64)
        self.worker: threading.Thread | None = None
        self.failed = False
        self.loaded = False  # the current graph came from the file

    # -- called with ``lock`` held ------------------------------------------------------------

    def _reserve(self, size: int) -> None:
        if size > self.version.size:
            grown = np.zeros(max(size, self.version.size * 3 // 2), dtype=np.int64)
            grown[: self.version.size] = self.version
            self.version = grown

    def changed(self, slot: int) -> None:
        """A slot was written or removed; its graph entries are stale."""
        self._reserve(slot + 1)
        self.version[slot] += 1
        for graph in (self.graph, self.building):
            if graph is not None:
                graph.invalidate(slot)

    def pending(self, size: int, mask: np.ndarray) -> np.ndarray:
        """Slots passing ``mask`` whose current vector the graph does not hold."""
        graph = self.graph
        graph.reserve_slots(size)
        return np.flatnonzero(mask[:size] & (graph.slot_entry[:size] < 0))

    def want(self, live: int) -> None:
        """Start the background thread if the graph needs building, folding or rebuilding."""
        if self.failed or (self.worker is not None and self.worker.is_alive()):
            return
        graph = self.graph
        if graph is None or graph.stale > STALE_REBUILD * max(graph.entries, 1):
            job = self.build
        elif live - graph.current >= FOLD_MIN:
            job = self._fold
        else:
            return
        self.worker = threading.Thread(target=self._run, args=(job,), name="ann-index", daemon=True)
        self.worker.start()

    # -- the background thread ----------------------------------------------------------------

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a graph that cannot be built leaves exact search in place, not a broken one
            log.exception("approximate index failed; searches stay exact")
            with self.lock:
                self.failed, self.building = True, None

    def _add(self, graph: HnswGraph, slots: np.ndarray) -> None:
        """Add ``slots``' vectors to ``graph`` in batches; each batch is committed unless rewritten meanwhile."""
        for start in range(0, slots.size, ADD_BATCH):
            with self.lock:
                batch = slots[start : start + ADD_BATCH]
                self._reserve(int(batch.max()) + 1)
                seen = self.version[batch].copy()
                vectors = self.rows.vectors(batch)
                entries = graph.new_entries(batch)
            graph.add(entries, vectors)
            with self.lock:
                unchanged = self.version[batch] == seen
                graph.commit(batch[unchanged], entries[unchanged])

    def build(self) -> None:
        """A first graph (loaded when another process saved one) or a replacement for a stale one.
        Runs in the background thread (``want``); benchmarks call it directly."""
        if self.file is None:
            self._build_new()
            return
        with self.file.locked():  # one process builds; the others wait here, then load its graph
            if self.graph is None and (loaded := self._load()) is not None:
                with self.lock:
                    self.graph, self.loaded = loaded, True
                return
            self._build_new()
            with self.lock:
                graph, rowids = self.graph, self.graph.entry_rowids(self.rows)
            self.file.save(graph.index, rowids)

    def _build_new(self) -> None:
        with self.lock:
            slots = self.rows.live_slots()
            self.building = HnswGraph(self.dim, int(slots.max()) + 1 if slots.size else 0)
        self._add(self.building, slots)
        with self.lock:
            self.graph, self.building, self.loaded = self.building, None, False

    def _load(self) -> HnswGraph | None:
        """The saved graph with each entry matched to the live row whose vector it still holds;
        None when there is none, it does not fit, or it holds too few of the live rows."""
        saved = self.file.load(self.dim)
        if saved is None:
            return None
        index, rowids = saved
        keys, all_vectors = np.asarray(index.keys, dtype=np.int64), index.vectors
        graph = HnswGraph(self.dim, 0, index)
        graph.entries = rowids.size
        graph.entry_slot = np.full(rowids.size, -1, dtype=np.int64)
        with self.lock:
            self.building = graph  # writes from here on invalidate what was matched
        for start in range(0, keys.size, CHECK_BATCH):
            batch = keys[start : start + CHECK_BATCH]
            saved_vectors = all_vectors[start : start + batch.size].astype(np.float32)
            with self.lock:
                slots = self.rows.slots(rowids[batch])
                found = slots >= 0
                self._reserve(int(slots.max()) + 1 if slots.size else 0)
                current = self.rows.vectors(slots[found])
                same = np.zeros(batch.size, dtype=bool)
                norms = np.maximum(np.linalg.norm(saved_vectors[found], axis=1), 1e-12)
                same[found] = np.einsum("nd,nd->n", saved_vectors[found], current) / norms >= SAME_VECTOR
                graph.entry_slot[batch[same]] = slots[same]
                graph.commit(slots[same], batch[same])
        with self.lock:
            live = self.rows.live_slots().size
            self.building = None
        if graph.current < MIN_LOADED * live:
            log.info("saved graph holds %d of %d rows; building a new one", graph.current, live)
            return None
        return graph

    def _fold(self) -> None:
        with self.lock:
            graph = self.graph
            live = self.rows.live_slots()
            graph.reserve_slots(int(live.max()) + 1 if live.size else 0)
            slots = live[graph.slot_entry[live] < 0]
        self._add(graph, slots)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background thread is idle (tests, benchmarks); True when it is."""
        worker = self.worker
        if worker is not None:
            worker.join(timeout)
        return worker is None or not worker.is_alive()


class GraphFile:
    """A graph saved beside the SQLite file: the usearch index and each entry's rowid, replaced
    together under an exclusive file lock that readers take too."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rowids_path = Path(f"{path}.rowids.npy")
        self.lock_path = Path(f"{path}.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.lock_path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self, index: Index, rowids: np.ndarray) -> None:
        """Write both files under temporary names, then move them into place (lock held)."""
        tmp_index, tmp_rowids = Path(f"{self.path}.tmp"), Path(f"{self.path}.rowids.tmp.npy")
        index.save(str(tmp_index))
        np.save(tmp_rowids, rowids)
        os.replace(tmp_rowids, self.rowids_path)
        os.replace(tmp_index, self.path)

    def load(self, dim: int) -> tuple[Index, np.ndarray] | None:
        """The saved index and entry rowids, or None when missing or not this matrix's kind (lock held)."""
        if not (self.path.exists() and self.rowids_path.exists()):
            return None
        try:
            index = Index.restore(str(self.path))
            rowids = np.load(self.rowids_path)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("cannot read saved graph %s: %s", self.path, exc)
            return None
        if index is None or index.ndim != dim or index.size != rowids.size or rowids.ndim != 1:
            return None
        if index.size and int(np.asarray(index.keys, dtype=np.int64).max()) >= rowids.size:
            return None
        index.expansion_search = EXPANSION_SEARCH
        return index, rowids

    def remove(self) -> None:
        for path in (self.path, self.rowids_path, self.lock_path):
            path.unlink(missing_ok=True)
