"""A chat's page read in the ranking itself against ranked first and then fetched by id (issue 22).

Run: ``.venv/bin/python -m tests.bench.chat_page_fetch --cache-dir DIR`` (the corpus vectors are
cached there as for ``chat_load``). Indexes SciFact, then runs a chat's search (``Dealer.retrieval``
with ``aggs=False``, a page of 6, one BLAS thread as a search process runs it) for each test
question both ways, alternated in rounds on the same store: with ``ranks_then_reads_the_page``
off (what Elasticsearch does: a ranking, then a search by id for the page's text) and on (what
SQLite does). Prints CPU ms per question and the ratio per round; checks both give the same chunks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.chat_load import SCIFACT, build_index
from tests.bench.retrieval_profile import tenant_of

PAGE = 6  # a chat's default top_n


def main() -> None:
    from threadpoolctl import threadpool_limits

    from rag.llm.embedding_model import BuiltinEmbedding
    from rag.nlp.search import Dealer, EmbeddedQuestion
    from rag.utils.sqlite_conn import SqliteConnection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    args = parser.parse_args()
    threadpool_limits(1, user_api="blas")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        _, kb_id, questions = build_index(data_dir, args.data, None, args.cache_dir)
        tenant_id = tenant_of(data_dir, kb_id)
        model = BuiltinEmbedding()
        model.warm_up()
        queries = [EmbeddedQuestion(q, *model.encode_queries(q)) for q in questions[: args.questions]]
        store = SqliteConnection(data_dir / "index")
        dealer = Dealer(store)

        def search_all(read_in_ranking: bool) -> tuple[float, list[dict]]:
            store.ranks_then_reads_the_page = read_in_ranking
            started = time.process_time()
            results = [dealer.retrieval(q.question, q, tenant_id, [kb_id], 1, PAGE, 0.2, 0.3, aggs=False)
                       for q in queries]
            return (time.process_time() - started) / len(queries) * 1000, results

        if search_all(False)[1] != search_all(True)[1]:  # also warms both ways
            raise SystemExit("the two ways gave different chunks")
        ratios = []
        for number in range(args.rounds):
            fetched_ms, _ = search_all(False)
            in_ranking_ms, _ = search_all(True)
            ratios.append(in_ranking_ms / fetched_ms)
            print(f"round {number}: ranked then fetched by id {fetched_ms:.3f} ms, "
                  f"read in the ranking {in_ranking_ms:.3f} ms (×{ratios[-1]:.3f})", flush=True)
        store.close()
    print(f"chat_page_read_in_ranking_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
