"""Keeping a model's reasoning apart from its answer.

Reasoning models either send reasoning in a separate field (``reasoning_content``) or inline
as ``<think>...</think>`` in the content. The inline form arrives split at arbitrary points in
a stream, so the splitter holds back any tail that could be the start of a tag.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Feed content pieces; get back (answer, reasoning) pieces with the tags removed.

    A ``</think>`` without an opening tag (some models omit it) turns everything before it
    into reasoning, as long as no answer text has been released yet.
    """

    def __init__(self) -> None:
        self._in_think = False
        self._pending = ""
        self._released_answer = False

    def feed(self, piece: str) -> tuple[str, str]:
        text = self._pending + piece
        self._pending = ""
        answer, reasoning = [], []
        while text:
            tag = CLOSE_TAG if self._in_think else OPEN_TAG
            index = text.find(tag)
            if not self._in_think and not self._released_answer and CLOSE_TAG in text and index == -1:
                head, _, text = text.partition(CLOSE_TAG)
                reasoning.append(head)
                continue
            if index == -1:
                keep = max(_partial_tag_suffix(text, tag), _partial_tag_suffix(text, CLOSE_TAG))
                emit, self._pending = text[: len(text) - keep], text[len(text) - keep :]
                (reasoning if self._in_think else answer).append(emit)
                break
            (reasoning if self._in_think else answer).append(text[:index])
            text = text[index + len(tag) :]
            self._in_think = not self._in_think
        answer_text = "".join(answer)
        if not self._released_answer:
            answer_text = answer_text.lstrip()
        self._released_answer = self._released_answer or bool(answer_text)
        return answer_text, "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """Whatever was held back at the end of the stream."""
        rest, self._pending = self._pending, ""
        return ("", rest) if self._in_think else (rest, "")


def split_reasoning(content: str) -> tuple[str, str]:
    """Answer and reasoning of a complete (non-streamed) content string."""
    splitter = ThinkSplitter()
    answer, reasoning = splitter.feed(content)
    tail_answer, tail_reasoning = splitter.flush()
    return answer + tail_answer, reasoning + tail_reasoning
