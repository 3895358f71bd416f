"""Intent routing: accuracy of the classifier on a labelled CRM set, and the latency it adds.

    python -m tests.bench.intent_routing            # tune on one half, report on the other
    python -m tests.bench.intent_routing --json     # the same, as one JSON object

Data: ``tests/bench/data/intents.jsonl``: 250 questions written for this benchmark, 55 per
intent (billing, technical_support, sales, general) and 30 that fit none (nonsense and
off-topic; the right answer for them is the fallback assistant). Each row names its half
(``tune`` / ``test``, alternating within each intent). Descriptions of the intents:
``tests/bench/data/intent_routes.json``.

Tuning uses the tune half only: its questions are the routes' examples, and each tune question
is classified leave-one-out (against the other examples) over a grid of ``top_k``, ``accept``
and ``margin``. The chosen setting is the one that lets the embedding stage decide the most
questions alone while its decisions stay at least ``--precision`` right (a question of no intent
decided as one is wrong; a wrong decision there is final, an unsure one still gets the LLM). The
test half is then classified against all tune examples.

Reported on the test half:
- ``embedding_decided``: share of questions the embedding stage decides without an LLM, and the
  share of those it gets right;
- ``accuracy_bounds``: end-to-end accuracy when the LLM stage is never right (every unsure
  question falls back) and when it always is; a real model lands between the two;
- ``top1_accuracy``: the embedding stage forced to pick among the 4 intents (no threshold);
- latency of the embedding stage per question (embedding the question with the builtin
  all-MiniLM-L6-v2 in this process, then scoring), p50/p95 in ms;
- ``service_classify_ms``: what routing adds to an answer through the server's own path
  (``intent_service.classify``: the routes read from SQLite, the question embedded through the
  bundle, scoring, the metrics), with no LLM configured, so unsure questions fall back at once.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.llm.embedding_model import BuiltinEmbedding
from rag.nlp.intent import IntentIndex, Thresholds

DATA = Path(__file__).resolve().parent / "data"
NONE = "none"
ACCEPTS = [round(0.20 + 0.02 * step, 2) for step in range(36)]
MARGINS = [round(0.01 * step, 2) for step in range(11)]
TOP_KS = (1, 2, 3, 5)


@dataclass
class Labelled:
    question: str
    intent: str
    split: str


def load() -> tuple[list[Labelled], dict[str, str]]:
    rows = [Labelled(**json.loads(line)) for line in (DATA / "intents.jsonl").read_text().splitlines() if line]
    return rows, json.loads((DATA / "intent_routes.json").read_text())


def outcome(decided: str | None, truth: str) -> str:
    """right/wrong when the embedding stage decided; unsure otherwise."""
    if decided is None:
        return "unsure"
    return "right" if decided == truth else "wrong"


def leave_one_out(tune: list[Labelled], vectors: np.ndarray, thresholds: Thresholds) -> list[str]:
    outcomes = []
    for index, row in enumerate(tune):
        examples = {}
        for intent in {r.intent for r in tune if r.intent != NONE}:
            rows = [i for i, r in enumerate(tune) if r.intent == intent and i != index]
            examples[intent] = vectors[rows]
        verdict = IntentIndex(examples).decide(vectors[index], thresholds)
        outcomes.append(outcome(verdict.intent, row.intent))
    return outcomes


def tune_thresholds(tune: list[Labelled], vectors: np.ndarray, precision: float) -> tuple[Thresholds, dict]:
    best: tuple[float, float, Thresholds] | None = None
    for top_k, accept, margin in itertools.product(TOP_KS, ACCEPTS, MARGINS):
        thresholds = Thresholds(accept=accept, margin=margin, top_k=top_k)
        outcomes = leave_one_out(tune, vectors, thresholds)
        decided = [o for o in outcomes if o != "unsure"]
        if not decided:
            continue
        right = decided.count("right") / len(decided)
        coverage = len(decided) / len(outcomes)
        if right >= precision and (best is None or (coverage, right) > best[:2]):
            best = (coverage, right, thresholds)
    if best is None:
        raise SystemExit(f"no setting reaches precision {precision}")
    return best[2], {"coverage": round(best[0], 4), "precision": round(best[1], 4)}


def evaluate(test: list[Labelled], tune: list[Labelled], test_vectors: np.ndarray, tune_vectors: np.ndarray,
             thresholds: Thresholds) -> dict:
    examples = {intent: tune_vectors[[i for i, r in enumerate(tune) if r.intent == intent]]
                for intent in {r.intent for r in tune if r.intent != NONE}}
    index = IntentIndex(examples)
    outcomes, top1 = [], []
    for row, vector in zip(test, test_vectors, strict=True):
        verdict = index.decide(vector, thresholds)
        outcomes.append(outcome(verdict.intent, row.intent))
        if row.intent != NONE:
            top1.append(verdict.ranked[0][0] == row.intent)
    decided = [o for o in outcomes if o != "unsure"]
    unsure_none = sum(o == "unsure" and row.intent == NONE for o, row in zip(outcomes, test, strict=True))
    per_intent = {}
    for intent in sorted({r.intent for r in test}):
        mine = [o for o, r in zip(outcomes, test, strict=True) if r.intent == intent]
        per_intent[intent] = {"n": len(mine), "decided": sum(o != "unsure" for o in mine),
                              "right": mine.count("right"), "wrong": mine.count("wrong")}
    return {
        "questions": len(test),
        "embedding_decided": {"share": round(len(decided) / len(test), 4),
                              "right_of_decided": round(decided.count("right") / max(len(decided), 1), 4)},
        "accuracy_bounds": {
            "llm_never_right": round((decided.count("right") + unsure_none) / len(test), 4),
            "llm_always_right": round((decided.count("right") + outcomes.count("unsure")) / len(test), 4),
        },
        "top1_accuracy": round(sum(top1) / len(top1), 4),
        "per_intent": per_intent,
    }


def embedding_latency(model: BuiltinEmbedding, test: list[Labelled], tune: list[Labelled], tune_vectors: np.ndarray,
                      thresholds: Thresholds) -> dict:
    """Per question: embed it (the builtin model, one question per call as the server does) and score it."""
    examples = {intent: tune_vectors[[i for i, r in enumerate(tune) if r.intent == intent]]
                for intent in {r.intent for r in tune if r.intent != NONE}}
    index = IntentIndex(examples)
    model.encode_queries("warm up")
    embed_ms, score_ms = [], []
    for row in test:
        started = time.perf_counter()
        vector, _ = model.encode_queries(row.question)
        embedded = time.perf_counter()
        index.decide(np.asarray(vector), thresholds)
        embed_ms.append((embedded - started) * 1000)
        score_ms.append((time.perf_counter() - embedded) * 1000)

    return {"embed_question_ms": percentiles(embed_ms), "score_ms": percentiles(score_ms)}


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3)}


async def service_latency(test: list[Labelled], tune: list[Labelled], descriptions: dict[str, str]) -> dict:
    """``intent_service.classify`` per test question, on a fresh data dir with the tuned defaults."""
    from api.components import build_components
    from api.db.migrate import upgrade
    from api.db.models import Dialog
    from api.db.services import intent_service, tenant_service
    from api.settings import load_settings

    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(environ={}, data_dir=Path(data_dir), search_processes=0, embed_processes=0)
        parts = build_components(settings)
        try:
            await asyncio.to_thread(upgrade, parts.db)
            tenant_id = (await parts.db.run(tenant_service.get_or_create_tenant, "bench")).id
            for intent in sorted({r.intent for r in tune if r.intent != NONE}):
                dialog = await parts.db.run(Dialog.create, tenant_id=tenant_id, name=intent)
                examples = [r.question for r in tune if r.intent == intent]
                await parts.db.run(intent_service.create_route, tenant_id, intent, descriptions[intent], examples,
                                   dialog.id)
            await intent_service.classify(parts, tenant_id, "warm up")  # the routes' vectors, computed once
            timings = []
            for row in test:
                started = time.perf_counter()
                await intent_service.classify(parts, tenant_id, row.question)
                timings.append((time.perf_counter() - started) * 1000)
        finally:
            await parts.aclose()
    return percentiles(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", type=float, default=0.99, help="least share right of the embedding decisions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, descriptions = load()
    tune = [r for r in rows if r.split == "tune"]
    test = [r for r in rows if r.split == "test"]
    model = BuiltinEmbedding()
    tune_vectors, _ = model.encode([r.question for r in tune])
    test_vectors, _ = model.encode([r.question for r in test])
    thresholds, tuned = tune_thresholds(tune, np.asarray(tune_vectors), args.precision)
    report = {
        "data": {"tune": len(tune), "test": len(test),
                 "intents": sorted({r.intent for r in rows if r.intent != NONE}), "no_intent_label": NONE},
        "tuned": {**asdict(thresholds), "tune_leave_one_out": tuned},
        "test": evaluate(test, tune, np.asarray(test_vectors), np.asarray(tune_vectors), thresholds),
        "latency": {**embedding_latency(model, test, tune, np.asarray(tune_vectors), thresholds),
                    "service_classify_ms": asyncio.run(service_latency(test, tune, descriptions))},
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
