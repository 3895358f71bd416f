"""A new question's embedding back-to-back against after the machine sat idle.

Run: ``.venv/bin/python -m tests.bench.embed_after_idle [--questions 60]``. Embeds SciFact test
questions (each made new with a suffix) with the builtin model in this process and through one
embedding child (``EmbeddingProcesses``), waiting 0, 20 or 200 ms before each call, and prints
the wall p50 per question with its ratio to the back-to-back one measured in the same run.

Why it exists: ``retrieval_profile`` asks its questions back to back, while a lone user's next
question (chat_load's baseline, a quiet server) arrives after the answer has streamed. The model's
float32 weights (about 42 MB past the word embeddings) are read from memory on every question; on
this project's cloud machines another tenant's work evicts them from the shared cache within tens
of milliseconds, so the same question costs more after a pause than in a burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rag.llm.embedding_model import BuiltinEmbedding
from rag.llm.embedding_processes import EmbeddingProcesses
from tests.bench import SCIFACT

MODEL = "all-MiniLM-L6-v2@Builtin"
GAPS_MS = (0, 20, 200)


def read_questions(data: Path, count: int) -> list[str]:
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line, _ in zip(fh, range(count), strict=False)]


async def p50_ms(embed: Callable[[str], Awaitable[object]], questions: list[str], gap_ms: float, tag: str) -> float:
    times = []
    for number, question in enumerate(questions):
        await asyncio.sleep(gap_ms / 1000)
        started = time.perf_counter()
        await embed(f"{question} {tag}{number}")  # new text: nothing along the way remembers it
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(questions: list[str]) -> dict[str, dict[int, float]]:
    model = BuiltinEmbedding()
    model.warm_up()
    children = EmbeddingProcesses(1)
    try:
        await children.warm_up(MODEL)

        async def in_process(text: str) -> object:
            return model.encode([text])

        async def in_child(text: str) -> object:
            return await children.encode(MODEL, [text])

        results: dict[str, dict[int, float]] = {"in this process": {}, "in an embedding child": {}}
        for name, embed in zip(results, (in_process, in_child), strict=True):
            await p50_ms(embed, questions[:10], 0, "warm")
            for gap in GAPS_MS:
                results[name][gap] = await p50_ms(embed, questions, gap, f"{name[:2]}{gap}-")
        return results
    finally:
        children.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--questions", type=int, default=60)
    args = parser.parse_args()
    results = asyncio.run(measure(read_questions(args.data, args.questions)))
    print("question embedding, wall p50 ms (ratio to back-to-back)")
    print(f"{'':24}" + "".join(f"{f'{gap} ms idle':>20}" for gap in GAPS_MS))
    for name, by_gap in results.items():
        cells = "".join(f"{f'{by_gap[gap]:.2f} (×{by_gap[gap] / by_gap[0]:.2f})':>20}" for gap in GAPS_MS)
        print(f"{name:24}{cells}")


if __name__ == "__main__":
    main()
