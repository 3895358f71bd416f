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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
from usearch.index import Index

log = logging.getLogger(__name__)

CONNECTIVITY = 16  # graph degree (M): 16 gives recall@10 ≥ 0.99 on MiniLM-like vectors
EXPANSION_ADD = 64  # candidate list while inserting: 64 builds ~2.5× faster than 128 at the same recall here
EXPANSION_SEARCH = 128  # candidate list while searching; usearch widens it to the count asked for
MIN_CANDIDATES = 128  # graph candidates re-scored exactly even when fewer rows are wanted
MAX_OVERFETCH = 8  # a filter keeping less than 1/8 of the rows is answered exactly instead
ADD_BATCH = 4096  # rows per add call, so a rebuild's progress and its swap stay fine-grained
FOLD_MIN = 256  # rows written since the graph was built that are scored exactly before being folded in
STALE_REBUILD = 0.25  # rebuild once this fraction of the graph's entries are stale (updated or deleted rows)


class HnswGraph:
    """A usearch HNSW graph over entries, with the entry↔slot maps that tell which are current."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.index = Index(ndim=dim, metric="ip", dtype="i8", connectivity=CONNECTIVITY,
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
        return slots[self.slot_entry[slots] == keys]

    def memory_bytes(self) -> int:
        return int(self.index.memory_usage) + self.entry_slot.nbytes + self.slot_entry.nbytes


class AnnMaintainer:
    """Keeps an ``HnswGraph`` in step with a matrix from one background thread.

    ``vectors(slots)`` copies rows of the matrix, ``live_slots()`` lists its live slots; both are
    called with ``lock`` held, the lock every write to the matrix also holds. ``version`` counts
    writes per slot so rows rewritten while the thread was adding them are not taken as current.
    """

    def __init__(self, dim: int, lock: threading.Lock, vectors: Callable[[np.ndarray], np.ndarray],
                 live_slots: Callable[[], np.ndarray]) -> None:
        self.dim = dim
        self.lock = lock
        self.vectors = vectors
        self.live_slots = live_slots
        self.graph: HnswGraph | None = None  # the one searches use, once complete
        self.building: HnswGraph | None = None  # a first graph or a replacement, under construction
        self.version = np.zeros(0, dtype=np.int64)
        self.worker: threading.Thread | None = None
        self.failed = False

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
            job = self._build
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
                vectors = self.vectors(batch)
                entries = graph.new_entries(batch)
            graph.add(entries, vectors)
            with self.lock:
                unchanged = self.version[batch] == seen
                graph.commit(batch[unchanged], entries[unchanged])

    def _build(self) -> None:
        with self.lock:
            slots = self.live_slots()
            self.building = HnswGraph(self.dim, int(slots.max()) + 1 if slots.size else 0)
        self._add(self.building, slots)
        with self.lock:
            self.graph, self.building = self.building, None

    def _fold(self) -> None:
        with self.lock:
            graph = self.graph
            live = self.live_slots()
            graph.reserve_slots(int(live.max()) + 1 if live.size else 0)
            slots = live[graph.slot_entry[live] < 0]
        self._add(graph, slots)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background thread is idle (tests, benchmarks); True when it is."""
        worker = self.worker
        if worker is not None:
            worker.join(timeout)
        return worker is None or not worker.is_alive()
