"""A lone new question in a search process: the search's text leg run while the question is
embedded (what ``embed_and_retrieve`` does) against embedding first and searching after, same run.

Run: ``.venv/bin/python -m tests.bench.embed_search_overlap [--questions 300] [--gap 0.2]`` (the
corpus vectors are cached in ``--cache-dir`` as for ``chat_load``). One search process on the
indexed SciFact corpus loads the builtin model's question graph; every test question (made new
with a suffix) goes to it twice, once each way in alternating order, ``--gap`` seconds after
the last call, as a lone user's next question arrives. Prints the wall p50 of each way from
this process (the process hop included) and inside the child, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.llm.onnx_encoder import QuestionGraph
from rag.nlp.search import EmbeddedQuestion
from tests.bench.chat_load import SCIFACT, build_index
from tests.bench.retrieval_profile import tenant_of

WAYS = ("embedding first, then the search", "text leg while embedding")


def _embedding_first(question: str, graph: QuestionGraph, args: tuple, kwargs: dict) -> tuple[Any, float]:
    """In the child: the question embedded, then searched (the way before the overlap)."""
    from rag.nlp import search_processes
    from rag.utils.token_utils import num_tokens

    started = time.perf_counter()
    encoder = search_processes._child_encoder(graph)
    query = EmbeddedQuestion(question, encoder.encode([question])[0], num_tokens(question))
    found = search_processes._child_dealer.retrieval(question, query, *args, **kwargs)
    return found, (time.perf_counter() - started) * 1000


def _overlapped(question: str, graph: QuestionGraph, args: tuple, kwargs: dict) -> tuple[Any, float]:
    """In the child: what ``SearchProcesses.embed_and_retrieve`` runs."""
    from rag.nlp import search_processes

    started = time.perf_counter()
    found = search_processes._child_embed_and_retrieve(question, graph, args, kwargs)
    return found, (time.perf_counter() - started) * 1000


async def measure(data_dir: Path, tenant_id: str, kb_id: str, questions: list[str], gap: float, settle: float
                  ) -> dict[str, dict[str, list[float]]]:
    from rag.llm.embedding_model import BuiltinEmbedding
    from rag.nlp.search_processes import SearchProcesses

    model = BuiltinEmbedding()
    model.warm_up()
    graph = model.question_graph
    if graph is None:
        raise RuntimeError("the builtin model has no question graph here")
    children = SearchProcesses(1, "sqlite", data_dir)
    calls = {WAYS[0]: _embedding_first, WAYS[1]: _overlapped}
    times: dict[str, dict[str, list[float]]] = {way: {"wall": [], "child": []} for way in WAYS}
    search = (tenant_id, [kb_id], 1, 6, 0.2, 0.3)
    try:
        await children.warm_up()
        if not await children.load_question_graph(graph):
            raise RuntimeError("the search process refused the question graph")
        await asyncio.sleep(settle)  # its postings read-ahead ends
        for number, question in enumerate(questions):
            for way in WAYS if number % 2 == 0 else reversed(WAYS):
                await asyncio.sleep(gap)
                started = time.perf_counter()
                _, child_ms = await children._children.run(calls[way], f"{question} {number}{way[0]}", graph,
                                                           search, {})
                times[way]["wall"].append((time.perf_counter() - started) * 1000)
                times[way]["child"].append(child_ms)
    finally:
        children.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds of quiet before each question")
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        _, kb_id, questions = build_index(data_dir, args.data, None, args.cache_dir)
        asked = (questions * (args.questions // len(questions) + 1))[: args.questions]
        times = asyncio.run(measure(data_dir, tenant_of(data_dir, kb_id), kb_id, asked, args.gap, args.settle))
    print(f"\n{len(asked)} new SciFact questions each way, {args.gap * 1000:.0f} ms apart, p50 ms:")
    for way in WAYS:
        print(f"{way:36} wall {statistics.median(times[way]['wall']):6.2f}  "
              f"in the child {statistics.median(times[way]['child']):6.2f}")
    before, after = (statistics.median(times[way]["wall"]) for way in WAYS)
    print(f"overlapped_vs_embedding_first_p50_ratio={after / before:.3f}")


if __name__ == "__main__":
    main()
