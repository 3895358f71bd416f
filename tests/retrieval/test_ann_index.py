"""VectorMatrix's approximate index (rag.nlp.ann_index): recall against exact, deletes, updates, filters.

Vectors are clustered like sentence embeddings (normalised mixtures of 2-3 topic directions
plus noise): uniformly random unit vectors have no neighbourhoods and are unrealistically hard
for a graph index.
"""

from __future__ import annotations

import numpy as np
import pytest

from rag.nlp import vector_matrix
from rag.nlp.vector_matrix import VectorMatrix

DIM = 96
ROWS = 6000
THRESHOLD = 1000


def clustered(rng: np.random.Generator, n: int, topics: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(topics), size=(n, 3))
    weights = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    weights[rng.random(n) < 0.4, 2] = 0
    vectors = np.einsum("nk,nkd->nd", weights, topics[picks])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors += rng.standard_normal(vectors.shape) * (0.25 / np.sqrt(DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    topics = rng.standard_normal((300, DIM))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    return clustered(rng, ROWS, topics), clustered(rng, 100, topics)


def filled(vectors: np.ndarray, ann_min_rows: int | None = THRESHOLD) -> VectorMatrix:
    matrix = VectorMatrix(DIM, ann_min_rows=ann_min_rows)
    for i, vec in enumerate(vectors):
        matrix.put(i + 1, f"c{i}", vec, kb=i % 2, doc=i // 10, available=True)
    return matrix


def built(vectors: np.ndarray) -> VectorMatrix:
    """A matrix whose graph is complete (a first search starts the build)."""
    matrix = filled(vectors)
    matrix.nearest(vectors[0], 10, matrix.live[: matrix.size])
    assert matrix.wait_for_ann(60)
    assert matrix.ann.graph is not None
    return matrix


def recall(matrix: VectorMatrix, queries: np.ndarray, topn: int, mask: np.ndarray, k: int = 10) -> float:
    hits = []
    for query in queries:
        got, cosines = matrix.nearest(query, topn, mask)
        want, want_cosines = matrix.nearest_exact(query, topn, mask)
        assert mask[got].all()
        assert np.allclose(cosines, matrix.mat[got] @ query)  # exact scores, not quantised ones
        assert (np.diff(cosines) <= 1e-6).all()  # best first
        hits.append(tie_aware_hits(cosines, want_cosines, k))
    return float(np.mean(hits))


def tie_aware_hits(cosines: np.ndarray, want_cosines: np.ndarray, k: int) -> float:
    """Share of the exact top k found, where a row tied with the exact k-th counts as found
    (duplicated vectors make which of the tied rows is returned arbitrary)."""
    k = min(k, len(want_cosines))
    return float((cosines[:k] >= want_cosines[k - 1] - 1e-6).sum()) / k


def no_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a fall-back to exact search fail the test, so recall is the graph's."""
    def refuse(*args, **kwargs):
        raise AssertionError("fell back to exact search")

    monkeypatch.setattr(VectorMatrix, "nearest_exact", refuse)


@pytest.mark.parametrize("topn", [10, 1024])
def test_recall_at_10_against_exact(data, topn, monkeypatch):
    vectors, queries = data
    matrix = built(vectors)
    mask = matrix.live[: matrix.size].copy()
    exact = VectorMatrix.nearest_exact
    hits = []
    no_exact(monkeypatch)
    for query in queries:
        got, cosines = matrix.nearest(query, topn, mask)
        _, want = exact(matrix, query, topn, mask)
        assert len(got) == topn
        hits.append(tie_aware_hits(cosines, want, 10))
    assert np.mean(hits) >= 0.99


def test_below_the_threshold_search_stays_exact(data):
    vectors, queries = data
    matrix = filled(vectors, ann_min_rows=ROWS + 1)
    mask = matrix.live[: matrix.size]
    for query in queries[:10]:
        got, cosines = matrix.nearest(query, 50, mask)
        scores = matrix.mat[: matrix.size] @ query
        assert got.tolist() == np.argsort(-scores, kind="stable")[:50].tolist()
    assert matrix.ann is None  # no graph was even started
    assert filled(vectors[:100], ann_min_rows=None).nearest(queries[0], 5, np.ones(100, bool))[0].size == 5


def test_deleted_rows_never_come_back(data):
    vectors, queries = data
    matrix = built(vectors)
    gone = set(range(1, ROWS + 1, 3))  # a third of the rowids
    for rowid in gone:
        matrix.remove(rowid)
    mask = matrix.live[: matrix.size].copy()
    assert recall(matrix, queries, 100, mask) >= 0.99
    for query in queries:
        got, _ = matrix.nearest(query, 100, mask)
        assert not set(matrix.rowids[got].tolist()) & gone


def test_updated_and_new_rows_are_found_before_and_after_folding(data, monkeypatch):
    vectors, queries = data
    matrix = built(vectors)
    no_exact(monkeypatch)
    target = queries[0]
    matrix.put(5, "moved", target, kb=0, doc=0, available=True)  # an existing row now equals the query
    matrix.put(ROWS + 10, "new", -target, kb=0, doc=0, available=True)  # a new row, not in the graph
    mask = matrix.live[: matrix.size].copy()
    got, cosines = matrix.nearest(target, 10, mask)
    assert matrix.rowids[got[0]] == 5 and cosines[0] == pytest.approx(1.0, abs=1e-5)
    got, _ = matrix.nearest(-target, 10, mask)
    assert matrix.rowids[got[0]] == ROWS + 10
    # enough new rows to be folded into the graph in the background; still found afterwards
    rng = np.random.default_rng(3)
    extra = vectors[rng.integers(0, ROWS, 400)] + 0.01
    for i, vec in enumerate(extra):
        matrix.put(ROWS + 100 + i, f"x{i}", vec, kb=1, doc=0, available=True)
    mask = matrix.live[: matrix.size].copy()
    matrix.nearest(target, 10, mask)
    assert matrix.wait_for_ann(60)
    assert matrix.ann.pending(matrix.size, mask).size < vector_matrix.MIN_CANDIDATES
    got, _ = matrix.nearest(-target, 10, mask)
    assert matrix.rowids[got[0]] == ROWS + 10
    monkeypatch.undo()
    assert recall(matrix, queries, 100, mask) >= 0.99


def test_many_rewrites_rebuild_the_graph(data):
    vectors, queries = data
    matrix = built(vectors)
    first = matrix.ann.graph
    rng = np.random.default_rng(5)
    for rowid in range(1, ROWS // 2):  # half the rows get new vectors: their entries go stale
        matrix.put(rowid, f"c{rowid}", vectors[rng.integers(0, ROWS)], kb=0, doc=0, available=True)
    mask = matrix.live[: matrix.size].copy()
    matrix.nearest(queries[0], 10, mask)
    assert matrix.wait_for_ann(60)
    assert matrix.ann.graph is not first and matrix.ann.graph.stale == 0
    assert recall(matrix, queries, 100, mask) >= 0.99


def test_filters_are_respected(data, monkeypatch):
    vectors, queries = data
    matrix = built(vectors)
    half = matrix.live[: matrix.size] & (matrix.kb[: matrix.size] == 1)  # one of two datasets
    assert recall(matrix, queries, 100, half) >= 0.99
    few = matrix.live[: matrix.size] & (matrix.doc[: matrix.size] < 6)  # 60 rows: answered exactly
    for query in queries[:10]:
        got, _ = matrix.nearest(query, 100, few)
        want, _ = matrix.nearest_exact(query, 100, few)
        assert got.tolist() == want.tolist()
    unavailable = np.zeros(matrix.size, dtype=bool)
    assert matrix.nearest(queries[0], 10, unavailable)[0].size == 0


def test_exact_gathers_selective_masks_with_the_same_answer(data):
    vectors, queries = data
    matrix = filled(vectors, ann_min_rows=None)
    few = matrix.live[: matrix.size] & (matrix.doc[: matrix.size] % 50 == 0)
    for query in queries[:10]:
        got, cosines = matrix.nearest(query, 20, few)
        scores = np.where(few, matrix.mat[: matrix.size] @ query, -np.inf)
        assert got.tolist() == np.argsort(-scores, kind="stable")[:20].tolist()
        assert np.allclose(cosines, scores[got])


def test_searches_and_writes_while_the_graph_is_built(data):
    """The background build runs beside searches and writes: every answer honours the mask and
    is ordered, and rows written meanwhile are found once the graph is complete."""
    vectors, queries = data
    matrix = filled(vectors)
    matrix.nearest(queries[0], 10, matrix.live[: matrix.size].copy())  # starts the build
    for i, query in enumerate(queries):
        matrix.put(ROWS + 1 + i, f"late{i}", query, kb=1, doc=0, available=True)  # equals question i
        matrix.remove(1 + 2 * i)
        mask = matrix.live[: matrix.size].copy()
        got, cosines = matrix.nearest(query, 20, mask)
        assert mask[got].all() and (np.diff(cosines) <= 1e-6).all()
        assert matrix.rowids[got[0]] == ROWS + 1 + i
    assert matrix.wait_for_ann(60)
    mask = matrix.live[: matrix.size].copy()
    for i, query in enumerate(queries):
        got, _ = matrix.nearest(query, 20, mask)
        assert matrix.rowids[got[0]] == ROWS + 1 + i
        assert not set(matrix.rowids[got].tolist()) & {1 + 2 * j for j in range(len(queries))}


def graph_of(matrix: VectorMatrix, query: np.ndarray) -> None:
    matrix.nearest(query, 10, matrix.live[: matrix.size].copy())
    assert matrix.wait_for_ann(60) and matrix.ann.graph is not None


def test_a_saved_graph_is_loaded_by_the_next_process(data, tmp_path, monkeypatch):
    vectors, queries = data
    path = tmp_path / "index.db.96.hnsw"
    first = VectorMatrix(DIM, ann_min_rows=THRESHOLD, ann_path=path)
    for i, vec in enumerate(vectors):
        first.put(i + 1, f"c{i}", vec, kb=0, doc=0, available=True)
    graph_of(first, queries[0])
    assert path.exists() and not first.ann.loaded
    # the next process reads its rows in another order (other slots) and the database moved on:
    # rows deleted, one rewritten, one added since the graph was saved
    second = VectorMatrix(DIM, ann_min_rows=THRESHOLD, ann_path=path)
    for i in reversed(range(ROWS)):
        if i % 5:
            second.put(i + 1, f"c{i}", queries[1] if i == 7 else vectors[i], kb=0, doc=0, available=True)
    second.put(ROWS + 1, "new", -queries[2], kb=0, doc=0, available=True)
    monkeypatch.setattr("rag.nlp.ann_index.AnnMaintainer._build_new",
                        lambda self: pytest.fail("built a graph instead of loading the saved one"))
    graph_of(second, queries[0])
    assert second.ann.loaded
    assert second.ann.graph.current == second.live_count - 2  # all but the rewritten and the new row
    mask = second.live[: second.size].copy()
    got, _ = second.nearest(queries[1], 5, mask)
    assert second.rowids[got[0]] == 8
    got, _ = second.nearest(-queries[2], 5, mask)
    assert second.rowids[got[0]] == ROWS + 1
    never_put = {i + 1 for i in range(0, ROWS, 5)}  # in the saved graph, not in this matrix
    for query in queries[:20]:
        got, _ = second.nearest(query, 50, mask)
        assert not set(second.rowids[got].tolist()) & never_put
    assert recall(second, queries, 100, mask) >= 0.99


def test_a_saved_graph_of_other_rows_or_unreadable_is_rebuilt(data, tmp_path):
    vectors, queries = data
    path = tmp_path / "index.db.96.hnsw"
    first = filled(vectors)
    first.ann_path = path
    graph_of(first, queries[0])
    other = VectorMatrix(DIM, ann_min_rows=THRESHOLD, ann_path=path)
    for i in range(ROWS):  # same rowids, different vectors: nothing in the file matches
        other.put(i + 1, f"c{i}", vectors[(i + 1) % ROWS], kb=0, doc=0, available=True)
    graph_of(other, queries[0])
    assert not other.ann.loaded and other.ann.graph.current == ROWS
    path.write_bytes(b"not a graph")
    third = filled(vectors)
    third.ann_path = path
    graph_of(third, queries[0])
    assert not third.ann.loaded and not third.ann.failed
    assert recall(third, queries, 100, third.live[: third.size].copy()) >= 0.99


def test_the_embedded_store_keeps_its_graph_beside_the_index_file(data, tmp_path, monkeypatch):
    """SqliteConnection's matrices save their graph beside the index's SQLite file, a second
    connection (a search process, a restart) loads it, and deleting the index deletes it."""
    from functools import partial

    from rag.utils import sqlite_index
    from rag.utils.doc_store_conn import MatchDenseExpr, index_name, make_chunk_row
    from rag.utils.sqlite_conn import SqliteConnection

    vectors, queries = data
    monkeypatch.setattr(sqlite_index, "VectorMatrix", partial(VectorMatrix, ann_min_rows=THRESHOLD))
    idx, kb = index_name("graph"), "kb"
    first = SqliteConnection(tmp_path)
    rows = [make_chunk_row(f"d{i}", kb, f"d{i}.txt", f"text {i}", vec) for i, vec in enumerate(vectors[:2000])]
    assert first.insert(rows, idx, kb) == []
    dense = [MatchDenseExpr(f"q_{DIM}_vec", tuple(queries[0].tolist()), 10)]

    def matrix_of(store: SqliteConnection) -> VectorMatrix:
        store.search(["id"], [], {}, dense, None, 0, 10, [idx], [kb])  # the first search starts the graph
        matrix = store.indexes[idx].matrices[DIM]
        assert matrix.wait_for_ann(60) and matrix.ann.graph is not None
        return matrix

    built = matrix_of(first)
    graph_file = first.indexes[idx].graph_path(DIM)
    assert not built.ann.loaded and graph_file.exists() and graph_file.parent == tmp_path
    monkeypatch.setattr("rag.nlp.ann_index.AnnMaintainer._build_new",
                        lambda self: pytest.fail("built a graph instead of loading the saved one"))
    assert matrix_of(SqliteConnection(tmp_path)).ann.loaded
    first.delete_idx(idx, "")
    assert list(tmp_path.glob(f"{graph_file.name.split('.')[0]}*")) == []


def test_an_exact_search_hands_back_every_cosine_and_other_hits_read_theirs_from_it(data) -> None:
    vectors, queries = data
    matrix = filled(vectors[:500], ann_min_rows=None)
    query = queries[0]
    everything = np.ones(500, dtype=bool)
    found = matrix.scored_nearest(query, 10, everything)
    assert found.every is not None and found.every.shape == (500,)
    others = np.array([3, 250, 499, -1, 77])  # text hits outside the top, and a row without a vector
    from_every = matrix.cosines(query, others, found.every)
    computed = matrix.cosines(query, others)
    np.testing.assert_allclose(from_every[:3], computed[:3], atol=1e-6)
    np.testing.assert_allclose(from_every[4], computed[4], atol=1e-6)
    assert np.isnan(from_every[3]) and np.isnan(computed[3])
    np.testing.assert_array_equal(found.slots, matrix.nearest_exact(query, 10, everything)[0])
    few = np.zeros(500, dtype=bool)
    few[:20] = True  # a narrow filter scores only its own rows, so there is no "every"
    assert matrix.scored_nearest(query, 10, few).every is None


def test_cosines_of_many_slots_come_from_one_product_of_every_row_and_equal_the_gathered_ones(data,
                                                                                              monkeypatch) -> None:
    vectors, queries = data
    matrix = filled(vectors[:400], ann_min_rows=None)
    query = queries[1]
    expected = vectors[:400] / np.linalg.norm(vectors[:400], axis=1, keepdims=True) @ query
    many = np.array([*range(0, 400, 2), -1])  # half the rows, and one without a vector
    few = np.array([5, 17, -1])
    gathered = {}
    real_matmul = np.ndarray.__matmul__

    class Recording(np.ndarray):
        def __matmul__(self, other):
            gathered.setdefault("rows", []).append(self.shape[0])
            return real_matmul(np.asarray(self), other)

    monkeypatch.setattr(matrix, "mat", matrix.mat.view(Recording))
    from_product = matrix.cosines(query, many)
    assert gathered.pop("rows") == [matrix.size]  # one product over every row, no gather
    from_rows = matrix.cosines(query, few)
    assert gathered.pop("rows") == [2]  # a few slots are gathered and scored alone
    np.testing.assert_allclose(from_product[:-1], expected[many[:-1]], atol=1e-5)
    np.testing.assert_allclose(from_rows[:-1], expected[few[:-1]], atol=1e-5)
    assert np.isnan(from_product[-1]) and np.isnan(from_rows[-1])
    assert np.isnan(matrix.cosines(query, np.array([-1, -1]))).all()


def test_marked_flags_exactly_the_given_slots_and_skips_rows_without_one(data) -> None:
    vectors, _ = data
    matrix = filled(vectors[:50], ann_min_rows=None)
    flags = matrix.marked(np.array([3, -1, 7, 3, 50, 49]))  # -1: no vector; 50: past the matrix
    assert flags.shape == (50,) and np.flatnonzero(flags).tolist() == [3, 7, 49]


def test_a_search_through_the_graph_hands_back_no_cosines_of_rows_it_did_not_score(data) -> None:
    vectors, queries = data
    matrix = filled(vectors)
    matrix.nearest(vectors[0], 10, matrix.live[: matrix.size])  # starts the graph's build
    assert matrix.wait_for_ann(60)
    assert matrix.scored_nearest(queries[0], 10, matrix.live[: matrix.size]).every is None
