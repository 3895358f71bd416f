"""Term postings read before questions ask for them, in the processes that search.

A search process keeps each question word's BM25 postings until the next write
(``SqliteIndex.term_postings``), but the first question holding a word pays for reading them
from FTS5, twice (its document frequency, then its rows with their BM25). Under ``chat_load``'s
first pass over SciFact's test questions (5.6k chunks), a search child spent 5–20 ms of CPU on a
new question instead of about 2.5, most of a chat's retrieval time for it.

So once an index is quiet (no write for ``QUIET_SECONDS``), a background thread reads the
postings of the words its chunks hold, most common first, as long as they fit in the cache's
budget (``WARM_SHARE`` of it), and stops at the first write it sees. FTS5's
vocabulary holds stems (porter), not the words questions hold, so the words come from the
index's own text; a throwaway in-memory FTS5 table with the same tokenizer tells each word's
stem, and one read per stem serves every word of it. Indexes above ``WARM_MAX_ROWS`` rows are
left to warm up question by question: reading all their text would cost more than it saves.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from rag.nlp.query import FulltextQueryer
from rag.utils.sqlite_index import FTS_TOKENIZER, MAX_SCORED_POSTINGS, SqliteIndex, column_weights

log = logging.getLogger(__name__)

# No write seen for this long before an index's postings are read again: a reading costs ~3 s of
# CPU per 10k chunks, so an index written every few seconds while questions come must not
# trigger one after each write (the questions then read their words themselves, as before).
QUIET_SECONDS = 30.0
WARM_SHARE = 0.75  # of the index's postings cache: the rest stays for the words read live
WARM_MAX_ROWS = 100_000  # SciFact in 10.8k chunks: 0.4 s to read and group its words, 2.6 s of CPU in all


def words_by_stem(texts: Sequence[str]) -> dict[str, list[str]]:
    """The distinct words of ``texts`` (already space-separated tokens), grouped by the stem FTS5
    gives them. A word FTS5 splits into several tokens is left out (FTS5 would match it as a
    phrase, which the postings cache does not hold)."""
    words = sorted({word for text in texts for word in text.split()})
    stems: dict[int, list[str]] = {}
    with sqlite3.connect(":memory:") as conn:
        conn.execute(f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize='{FTS_TOKENIZER}')")
        conn.executemany("INSERT INTO words(rowid, word) VALUES (?, ?)", enumerate(words))
        conn.execute("CREATE VIRTUAL TABLE stems USING fts5vocab(words, instance)")
        for stem, row in conn.execute("SELECT term, doc FROM stems"):
            stems.setdefault(row, []).append(stem)
    grouped: dict[str, list[str]] = {}
    for row, found in stems.items():
        if len(found) == 1:
            grouped.setdefault(found[0], []).append(words[row])
    return grouped


def index_texts(conn: sqlite3.Connection) -> list[str]:
    """Every full-text column of every chunk: the words questions can match."""
    return [text for row in conn.execute("SELECT title, content, important, question FROM chunk_fts")
            for text in row if text]


def stem_frequencies(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows holding each stem of the index (FTS5's own vocabulary)."""
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_vocab USING fts5vocab(main, chunk_fts, row)")
    return dict(conn.execute("SELECT term, doc FROM temp.chunk_vocab"))


def warm(index: SqliteIndex, weights: str, keep_going: Callable[[], bool] = lambda: True) -> int:
    """Read ahead the postings of ``index``'s words for the column ``weights``, as many stems as
    fit in the budget; the number of stems kept. Stops at the first write since it started or
    when ``keep_going()`` turns false."""
    index.sync()
    seq, conn = index.seq, index.reader()
    rows = conn.execute("SELECT count(*) FROM chunk").fetchone()[0]
    if not index.matrices or rows > WARM_MAX_ROWS or index.postings_limit <= 0:
        return 0
    frequencies = stem_frequencies(conn)
    grouped = words_by_stem(index_texts(conn))
    budget = int(index.postings_limit * WARM_SHARE)
    most_common_first = sorted(grouped, key=lambda s: -frequencies.get(s, 0))
    kept = 0
    for matrix in list(index.matrices.values()):
        for stem in most_common_first:
            if not keep_going():
                return kept
            if not 0 < frequencies.get(stem, 0) <= MAX_SCORED_POSTINGS:
                continue
            if index.cached_postings + frequencies[stem] > budget:
                continue  # a rarer stem may still fit
            postings = index.term_postings(grouped[stem][0], weights, matrix)
            if not index.remember_postings(grouped[stem], postings, weights, matrix, seq):
                return kept
            kept += 1
    return kept


class PostingsWarmer:
    """Reads an index's postings ahead in a background thread whenever it has been quiet since
    the last reading (``maybe_start``, called by every search; it returns at once)."""

    def __init__(self, index: SqliteIndex, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.index = index
        self.weights = column_weights(FulltextQueryer().fields())  # the field weights questions search with
        self.quiet_seconds = quiet_seconds
        self.warmed_seq: int | None = None
        self.seen_seq, self.seen_at = index.seq, float("-inf")  # an index just opened counts as quiet
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.lock = threading.Lock()

    def maybe_start(self) -> None:
        with self.lock:
            if self.stopped or (self.thread is not None and self.thread.is_alive()):
                return
            now, seq = time.monotonic(), self.index.seq
            if seq != self.seen_seq:
                self.seen_seq, self.seen_at = seq, now
            if self.warmed_seq == seq or now - self.seen_at < self.quiet_seconds:
                return
            self.warmed_seq = seq
            self.thread = threading.Thread(target=self._run, name="ragline-postings-warmup", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            kept = warm(self.index, self.weights, lambda: not self.stopped)
            log.debug("read ahead the postings of %d stems of %s in %.1f s", kept, self.index.path,
                      time.perf_counter() - started)
        except Exception:  # reading ahead only saves time; a question reads what it needs itself
            log.warning("could not read ahead the postings of %s", self.index.path, exc_info=True)

    def join(self) -> None:
        """Wait until a reading in progress ends."""
        thread = self.thread
        if thread is not None:
            thread.join()

    def stop(self, wait: float | None = None) -> None:
        with self.lock:
            self.stopped = True
            thread = self.thread
        if thread is not None and wait is not None:
            thread.join(wait)
