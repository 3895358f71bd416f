"""Intent classification for routing a message to the assistant that should answer it.

Two stages. First, embedding similarity: the message's vector against every example of every
intent; an intent's score is the mean of its ``top_k`` best cosines (one lucky example counts
less than several close ones). When the best intent scores at least ``accept`` and leads the
runner-up by ``margin``, that is the answer: no LLM call. Otherwise the caller may ask an LLM
with ``llm_prompt`` (the intents' names and descriptions, one JSON object to answer) and read
its choice with ``parse_llm_choice``. ``accept``/``margin`` defaults were tuned on the tune half
of ``tests/bench/data/intents.jsonl`` (``python -m tests.bench.intent_routing``).

Pure numpy and text: no models, no HTTP, no database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.prompts.template import render

NONE = "none"  # what the LLM answers when no intent fits
JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


@dataclass(frozen=True)
class Thresholds:
    """When the embedding stage decides alone: best score ≥ ``accept`` and ≥ runner-up + ``margin``."""

    accept: float = 0.26
    margin: float = 0.07
    top_k: int = 3
    llm_min_confidence: float = 0.5  # an LLM choice less sure than this falls back


@dataclass(frozen=True)
class Verdict:
    """The embedding stage's result: ``intent`` None when it is not confident enough."""

    intent: str | None
    confidence: float
    ranked: list[tuple[str, float]] = field(default_factory=list)  # every intent's score, best first


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


class IntentIndex:
    """Every intent's example vectors, normalised once, scored against a message's vector."""

    def __init__(self, examples: Mapping[str, np.ndarray]) -> None:
        self.names = [name for name, vectors in examples.items() if len(vectors)]
        self.vectors = {name: _unit_rows(examples[name]) for name in self.names}

    def __bool__(self) -> bool:
        return bool(self.names)

    def ranked(self, query: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        """(intent, score) best first; the score is the mean of the intent's ``top_k`` best cosines."""
        unit = _unit_rows(query)[0]
        scores = []
        for name in self.names:
            cosines = np.sort(self.vectors[name] @ unit)[::-1][:top_k]
            scores.append((name, float(cosines.mean())))
        return sorted(scores, key=lambda item: -item[1])

    def decide(self, query: np.ndarray, thresholds: Thresholds) -> Verdict:
        ranked = self.ranked(query, thresholds.top_k)
        if not ranked:
            return Verdict(None, 0.0, ranked)
        best, score = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        confident = score >= thresholds.accept and score - runner_up >= thresholds.margin
        return Verdict(best if confident else None, round(max(score, 0.0), 4), ranked)


def llm_prompt(intents: Sequence[tuple[str, str]], candidates: Sequence[str] = ()) -> str:
    """The system prompt asking a model to pick one of ``intents`` ((name, description) pairs),
    the embedding stage's ``candidates`` listed first."""
    order = [*candidates, *(name for name, _ in intents if name not in candidates)]
    described = dict(intents)
    lines = "\n".join(f"- {name}: {described.get(name) or name}" for name in order)
    return render("intent", intents=lines, none=NONE)


def parse_llm_choice(text: str, names: Sequence[str]) -> tuple[str | None, float]:
    """The intent and confidence in the model's answer; (None, 0) when it names none, an
    unknown intent, or answers something that is not the JSON object asked for."""
    match = JSON_OBJECT.search(text or "")
    if match is None:
        return None, 0.0
    try:
        choice = json.loads(match.group(0))
    except ValueError:
        return None, 0.0
    if not isinstance(choice, dict):
        return None, 0.0
    by_lower = {name.lower(): name for name in names}
    intent = by_lower.get(str(choice.get("intent") or "").strip().lower())
    try:
        confidence = min(max(float(choice.get("confidence", 0.0)), 0.0), 1.0)
    except (TypeError, ValueError):
        confidence = 0.0
    return (intent, confidence) if intent is not None else (None, 0.0)
