"""LLM-backed prompt steps of the chat pipeline: standalone question and keywords.

Both are helpers whose failure must not fail the answer: on any model error they fall back to
what the pipeline would have done without them (the original question, no keywords) and log a
warning. They take any ``chat_mdl`` with ``async chat(system, history, gen_conf)`` returning a
string or an object with ``.text`` (``LLMBundle``'s ``ChatResult``), so tests and other callers
can pass a small fake.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rag.llm.reasoning import split_reasoning
from rag.prompts.template import render
from rag.utils.token_utils import truncate

logger = logging.getLogger(__name__)

REFINE_TEMPERATURE = 0.2
KEYWORD_TEMPERATURE = 0.1
# Enough of the conversation to resolve references, bounded so a long chat stays a cheap call.
REFINE_MAX_MESSAGES = 8
REFINE_MAX_MESSAGE_TOKENS = 400
KEYWORD_MAX_TEXT_TOKENS = 1000
# Longer "keywords" are sentences the model wrote around the list, not keywords.
KEYWORD_MAX_WORDS = 8
KEYWORD_MAX_CHARS = 80
OUTPUT_CUE = "Output:"


class ChatModel(Protocol):
    """What these steps need of a model: ``LLMBundle`` (usage recorded) or any fake in tests."""

    async def chat(self, system: str, history: list[dict], gen_conf: dict) -> Any: ...


async def chat_text(chat_mdl: ChatModel, system: str, history: list[dict], gen_conf: dict) -> str:
    """The answer of ``chat_mdl.chat`` as text, whether it returned a str or an object with
    ``.text``, with any ``<think>`` reasoning removed."""
    result = await chat_mdl.chat(system, history, gen_conf)
    text = result if isinstance(result, str) else str(getattr(result, "text", "") or "")
    answer, _reasoning = split_reasoning(text)
    return answer.strip()


async def _instruct(chat_mdl: ChatModel, system: str, temperature: float) -> str:
    """One instruction call: the task is all in the system prompt, the user turn only cues output."""
    cue = [{"role": "user", "content": OUTPUT_CUE}]
    return await chat_text(chat_mdl, system, cue, {"temperature": temperature})


_LABEL = re.compile(
    r"^\s*(?:output|answer|(?:refined|rewritten|standalone|full)?\s*question|keywords?|key\s*phrases?"
    r"|here (?:are|is)[^:：\n]*)\s*[:：]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`"


def _clean_question(text: str) -> str:
    """The model's rewrite without a label (``Question:``) or quotes around it."""
    return _LABEL.sub("", text).strip().strip(_QUOTES).strip()


def _conversation(messages: Sequence[Mapping[str, Any]]) -> str:
    turns = [m for m in messages if m.get("role") in ("user", "assistant")][-REFINE_MAX_MESSAGES:]
    lines = (f"{m['role'].upper()}: {str(m.get('content') or '')}" for m in turns)
    return "\n".join(truncate(line, REFINE_MAX_MESSAGE_TOKENS) for line in lines)


async def full_question(
    chat_mdl: ChatModel, messages: Sequence[Mapping[str, Any]], today: datetime.date | None = None
) -> str:
    """The last user question rewritten to stand on its own (pronouns and relative dates resolved).

    Without an earlier user message there is nothing to resolve, and the question is returned
    without calling the model. On any model error (or an empty rewrite) the original question is
    returned: a failed rewrite must not fail the answer, it only makes retrieval less precise.
    ``today`` (default: the current date) anchors "yesterday" and "tomorrow".
    """
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    if not users:
        return ""
    question = users[-1]
    if len(users) < 2:
        return question
    today = today or datetime.date.today()
    system = render(
        "full_question",
        today=today.isoformat(),
        yesterday=(today - datetime.timedelta(days=1)).isoformat(),
        tomorrow=(today + datetime.timedelta(days=1)).isoformat(),
        conversation=_conversation(messages),
    )
    try:
        rewritten = await _instruct(chat_mdl, system, REFINE_TEMPERATURE)
    except Exception as exc:
        logger.warning("full_question: model failed (%s); using the original question", exc)
        return question
    return _clean_question(rewritten) or question


_FENCE = re.compile(r"^\s*```\w*\s*$", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)、])\s*")
_SEPARATORS = re.compile(r"[,，、;；]")


def _keywords_of(text: str) -> list[str]:
    """Keywords in a model's reply: comma (or line, or bullet) separated, labels and quotes
    removed, duplicates and sentence-like items dropped."""
    keywords: dict[str, str] = {}
    for line in _FENCE.sub("", text).splitlines():
        line = line.strip()
        if line.endswith((":", "：")):
            continue
        for piece in _SEPARATORS.split(_LABEL.sub("", line)):
            word = _BULLET.sub("", piece).strip().strip(_QUOTES + "*").strip().rstrip(".。").strip()
            if word and len(word) <= KEYWORD_MAX_CHARS and len(word.split()) <= KEYWORD_MAX_WORDS:
                keywords.setdefault(word.casefold(), word)
    return list(keywords.values())


async def keyword_extraction(chat_mdl: ChatModel, question: str, topn: int = 3) -> list[str]:
    """Up to ``topn`` keywords of ``question``, most important first, to boost full-text search.

    On any model error the result is ``[]``: retrieval then runs on the question alone.
    """
    if topn <= 0 or not question.strip():
        return []
    system = render("keywords", topn=topn, content=truncate(question, KEYWORD_MAX_TEXT_TOKENS))
    try:
        reply = await _instruct(chat_mdl, system, KEYWORD_TEMPERATURE)
    except Exception as exc:
        logger.warning("keyword_extraction: model failed (%s); no keywords", exc)
        return []
    return _keywords_of(reply)[:topn]
