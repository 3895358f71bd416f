"""Chat models: any provider through LiteLLM's Router (async), and the builtin extractive one (sync).

Both speak the same contract, which LLMBundle relies on:
``chat(system, history, gen_conf) -> ChatResult`` and ``chat_streamly(system, history,
gen_conf)`` yielding ``ChatDelta`` pieces (answer text and reasoning kept apart, usage on the
last piece when the provider reports it). The LiteLLM model's methods are coroutines / async
generators; the extractive model's are a plain function and a sync generator, which is why
the bundle inspects methods instead of assuming one kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litellm import Router

from rag.llm.errors import LLMServiceError, translate_exception
from rag.llm.reasoning import ThinkSplitter, split_reasoning
from rag.llm.router import CURRENT_BUDGET, CallBudget, call_budget
from rag.llm.types import ChatDelta, ChatResult, TokenUsage

EXTRACTIVE_MODEL = "extractive@Builtin"


def build_messages(system: str | None, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style messages: the system prompt first, then role/content of each turn."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.extend({"role": turn["role"], "content": turn.get("content") or ""} for turn in history)
    return messages


def _usage_of(raw: Any) -> TokenUsage | None:
    if raw is None or getattr(raw, "prompt_tokens", None) is None:
        return None
    return TokenUsage(prompt_tokens=int(raw.prompt_tokens or 0), completion_tokens=int(raw.completion_tokens or 0))


class LiteLLMChat:
    """One ``name@factory`` model served through the shared Router; calls bounded by ``timeout``."""

    def __init__(self, model_name: str, router: Router, timeout: float) -> None:
        self.model_name = model_name
        self.router = router
        self.timeout = timeout

    def _error(self, exc: BaseException, budget: CallBudget) -> LLMServiceError:
        error = translate_exception(exc, self.model_name)
        error.attempts = max(budget.attempts, 1)
        error.arm = budget.arm
        return error

    async def chat(self, system: str | None, history: list[dict], gen_conf: dict[str, Any]) -> ChatResult:
        with call_budget(self.timeout) as budget:
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.router.acompletion(
                        model=self.model_name, messages=build_messages(system, history), **gen_conf
                    )
                choice = response.choices[0]
                answer, thought = split_reasoning(choice.message.content or "")
            except Exception as exc:
                raise self._error(exc, budget) from exc
        reasoning = (getattr(choice.message, "reasoning_content", None) or "") + thought
        return ChatResult(
            text=answer,
            reasoning=reasoning,
            usage=_usage_of(getattr(response, "usage", None)),
            finish_reason=choice.finish_reason,
            model=budget.arm or self.model_name,
            attempts=max(budget.attempts, 1),
            arm=budget.arm,
        )

    async def _open_stream(self, messages: list[dict], gen_conf: dict[str, Any], budget: CallBudget) -> Any:
        """Start the stream; retries and fallbacks happen here, before the first chunk."""
        token = CURRENT_BUDGET.set(budget)
        try:
            async with asyncio.timeout(budget.remaining()):
                return await self.router.astream_chat(self.model_name, messages, gen_conf)
        except Exception as exc:
            raise self._error(exc, budget) from exc
        finally:
            CURRENT_BUDGET.reset(token)

    async def chat_streamly(
        self, system: str | None, history: list[dict], gen_conf: dict[str, Any]
    ) -> AsyncIterator[ChatDelta]:
        """Deltas until the model finishes; every chunk must arrive within the call's budget,
        so a stalled stream ends as LLMTimeoutError instead of hanging."""
        budget = CallBudget(deadline=time.monotonic() + self.timeout)
        stream = await self._open_stream(build_messages(system, history), gen_conf, budget)
        attempts = max(budget.attempts, 1)
        splitter = ThinkSplitter()
        usage: TokenUsage | None = None
        finish_reason: str | None = None
        chunks = stream.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(budget.remaining()):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._error(exc, budget) from exc
                if chunk.usage:
                    usage = TokenUsage(prompt_tokens=int(chunk.usage.get("prompt_tokens") or 0),
                                       completion_tokens=int(chunk.usage.get("completion_tokens") or 0))
                finish_reason = chunk.finish_reason or finish_reason
                answer, thought = splitter.feed(chunk.text)
                thought = chunk.reasoning + thought
                if answer or thought:
                    yield ChatDelta(text=answer, reasoning=thought, attempts=attempts, arm=budget.arm)
            answer, thought = splitter.flush()
            yield ChatDelta(text=answer, reasoning=thought, usage=usage, finish_reason=finish_reason,
                            attempts=attempts, arm=budget.arm)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()
            with contextlib.suppress(Exception):
                await stream.aclose()


STOPWORDS = frozenset(
    "a an and are as at be by did do does for from has have how i in is it its of on or that the this to "
    "was were what when where which who whom why will with you your".split()
)
CHUNK_MARKER = re.compile(r"(?m)^[\s│├└─]*(?:\[ID:\s*(\d+)\]|ID:\s*(\d+))\s*")
METADATA_LINE = re.compile(r"^(title|url|source|document|meta\w*)\s*:", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
WORD = re.compile(r"\w+")
MAX_QUOTED_SENTENCES = 3
NO_DOCUMENTS = "No documents were retrieved, and the builtin extractive model can only quote documents."
NO_MATCH = "The retrieved documents do not contain a sentence that answers this question."


def _terms(text: str) -> set[str]:
    return {word for word in WORD.findall(text.lower()) if word not in STOPWORDS}


def _clean_chunk(text: str) -> str:
    """Chunk text without the tree drawing and title/URL lines prompt formatters add."""
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("│├└─ ").strip()
        if not line or METADATA_LINE.match(line):
            continue
        lines.append(re.sub(r"^content\s*:\s*", "", line, flags=re.IGNORECASE))
    return "\n".join(lines)


def chunks_in_prompt(prompt: str) -> list[tuple[int, str]]:
    """(id, text) of each ``ID: n`` / ``[ID:n]`` block of the knowledge in a prompt."""
    markers = list(CHUNK_MARKER.finditer(prompt))
    ends = [following.start() for following in markers[1:]] + [len(prompt)] if markers else []
    return [
        (int(marker.group(1) or marker.group(2)), _clean_chunk(prompt[marker.end() : end]))
        for marker, end in zip(markers, ends, strict=True)
    ]


class ExtractiveChat:
    """Builtin model for installs without an LLM: quotes the sentences of the retrieved chunks
    that share most words with the question, each followed by its ``[ID:n]`` marker.

    It is synchronous on purpose (pure CPU, no I/O): the bundle runs it in a worker thread.
    """

    model_name = EXTRACTIVE_MODEL
    metadata = {"extractive": True, "note": "Answer quoted from the retrieved documents; no LLM is configured."}

    def answer_sentences(self, system: str | None, history: list[dict]) -> list[str]:
        """Chat puts the knowledge in the system prompt; only without any there are the earlier
        turns read for it (a gateway caller's pasted blocks). Read with the system prompt, the
        earlier answers ran on as the last block's text and were quoted again, citations and all."""
        question = next((str(t.get("content") or "") for t in reversed(history) if t.get("role") == "user"), "")
        chunks = chunks_in_prompt(system or "") or chunks_in_prompt(
            "\n".join(str(turn.get("content") or "") for turn in history[:-1]))
        if not chunks:
            return [NO_DOCUMENTS]
        wanted = _terms(question)
        scored = []
        for chunk_id, text in chunks:
            for sentence in filter(None, (s.strip() for s in SENTENCE_END.split(text))):
                overlap = len(wanted & _terms(sentence))
                if overlap:
                    scored.append((overlap, len(scored), f"{sentence} [ID:{chunk_id}]"))
        best = sorted(scored, key=lambda item: (-item[0], item[1]))[:MAX_QUOTED_SENTENCES]
        return [quote for _, _, quote in sorted(best, key=lambda item: item[1])] or [NO_MATCH]

    def chat(self, system: str | None, history: list[dict], gen_conf: dict[str, Any]) -> ChatResult:
        text = " ".join(self.answer_sentences(system, history))
        return ChatResult(text=text, finish_reason="stop", model=self.model_name, metadata=dict(self.metadata))

    def chat_streamly(self, system: str | None, history: list[dict], gen_conf: dict[str, Any]) -> Iterator[ChatDelta]:
        for index, sentence in enumerate(self.answer_sentences(system, history)):
            yield ChatDelta(text=sentence if index == 0 else " " + sentence)
        yield ChatDelta(finish_reason="stop")
