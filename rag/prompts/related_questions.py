"""Related search questions for a question (RAGFlow's ``/sessions/related_questions``)."""

from __future__ import annotations

import re

from rag.prompts.generator import ChatModel, chat_text
from rag.prompts.template import render

RELATED_COUNT = 5
RELATED_TEMPERATURE = 0.9
OUTPUT_CUE = "Write the questions now."
_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.)、:]|[-*•])\s*")


async def related_questions(chat_mdl: ChatModel, question: str, industry: str | None = None,
                            count: int = RELATED_COUNT) -> list[str]:
    """Up to ``count`` questions related to ``question``, as the model wrote them.

    Model errors propagate: the caller answers them, since an empty list would claim the model
    found nothing to suggest.
    """
    context = f"\nThe user works in this industry: {industry.strip()}." if industry and industry.strip() else ""
    system = render("related_questions", count=count, industry=context, question=question.strip())
    reply = await chat_text(chat_mdl, system, [{"role": "user", "content": OUTPUT_CUE}],
                            {"temperature": RELATED_TEMPERATURE})
    return numbered_lines(reply)[:count]


def numbered_lines(reply: str) -> list[str]:
    """The questions of a reply: its numbered (or bulleted) lines without their numbers; a reply
    with no numbered line counts each non-empty line."""
    lines = [line for line in reply.splitlines() if line.strip()]
    numbered = [line for line in lines if _NUMBERED.match(line)]
    return [_NUMBERED.sub("", line).strip() for line in (numbered or lines) if _NUMBERED.sub("", line).strip()]
