"""Rerank models reached through LiteLLM's Router (Cohere, Jina, any Cohere-shaped endpoint).

Contract shared with LLMBundle: ``similarity(query, texts) -> (scores, tokens)``, scores in
the order of ``texts`` (not ranked order), so the caller can fuse them with its own scores.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from litellm import Router

from rag.llm.errors import translate_exception
from rag.llm.router import call_budget
from rag.utils.token_utils import num_tokens


def _field(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def _billed_tokens(response: Any) -> int | None:
    meta = _field(response, "meta") or {}
    tokens = _field(meta, "tokens") or {}
    value = _field(tokens, "input_tokens")
    return int(value) if value else None


class LiteLLMRerank:
    """One ``name@factory`` rerank model; calls bounded by ``timeout`` like chat calls."""

    def __init__(self, model_name: str, router: Router, timeout: float) -> None:
        self.model_name = model_name
        self.router = router
        self.timeout = timeout

    async def similarity(self, query: str, texts: list[str]) -> tuple[np.ndarray, int]:
        scores = np.zeros(len(texts), dtype=np.float32)
        if not texts:
            return scores, 0
        with call_budget(self.timeout) as budget:
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.router.arerank(
                        model=self.model_name, query=query, documents=list(texts), top_n=len(texts)
                    )
                for result in _field(response, "results") or []:
                    scores[int(_field(result, "index"))] = float(_field(result, "relevance_score"))
            except Exception as exc:
                error = translate_exception(exc, self.model_name)
                error.attempts = max(budget.attempts, 1)
                raise error from exc
        tokens = _billed_tokens(response) or num_tokens(query) + sum(num_tokens(t) for t in texts)
        return scores, tokens
