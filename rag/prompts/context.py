"""Fitting retrieved knowledge and a conversation into a model's context window.

Token counts are tiktoken's cl100k (``rag.utils.token_utils``): exact for OpenAI models, a close
estimate for others, which is why callers pass a budget with some headroom below the real
context window. Prompts are counted with ``prompt_tokens``, which remembers the pieces (template
lines, chunks) it has counted before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rag.utils.token_utils import CountingAllowance, num_tokens, prompt_tokens, token_bound, truncate

KNOWLEDGE_SEPARATOR = "\n\n"
# A chunk cut to fewer content tokens than this is dropped instead: such a fragment costs
# tokens without being able to support an answer.
MIN_TRUNCATED_CONTENT_TOKENS = 8
# Chat formats spend a few tokens per message on the role and delimiters (OpenAI: 3-4);
# counting them keeps a fitted conversation inside the window.
MESSAGE_OVERHEAD_TOKENS = 4
# When system prompt and question alone are too long, the system prompt is cut first if it holds
# more than this share of their tokens (RAGFlow's rule), else the question is.
SYSTEM_SHARE_CUT_FIRST = 0.8


def _first(chunk: Mapping[str, Any], *names: str) -> str:
    """The first non-empty field of ``names``: chunks come from retrieval (``docnm_kwd``) or
    from API-shaped references (``document_name``)."""
    for name in names:
        value = chunk.get(name)
        if value:
            return str(value)
    return ""


def _block_header(index: int, chunk: Mapping[str, Any]) -> str:
    """``ID: n`` and the chunk's descriptive fields, drawn as a small tree like RAGFlow's."""
    lines = [f"ID: {index}"]
    title = _first(chunk, "docnm_kwd", "document_name", "document_keyword")
    if title:
        lines.append(f"├── Title: {title}")
    url = _first(chunk, "url")
    if url:
        lines.append(f"├── URL: {url}")
    meta = chunk.get("meta_fields")
    if isinstance(meta, Mapping) and meta:
        lines.append("├── Metadata: " + "; ".join(f"{key}: {value}" for key, value in meta.items()))
    lines.append("└── Content:")
    return "\n".join(lines) + "\n"


def _truncate_clean(text: str, max_tokens: int) -> str:
    """``truncate`` without the replacement character a cut through a multi-byte character leaves."""
    cut = truncate(text, max(max_tokens, 0))
    return cut.rstrip("\ufffd") if len(cut) < len(text) else cut


def _truncated_block(header: str, content: str, budget: int) -> str | None:
    """The block cut to ``budget`` tokens, or None when too little of its content would remain."""
    room = budget - prompt_tokens(header)
    while room >= MIN_TRUNCATED_CONTENT_TOKENS:
        block = header + _truncate_clean(content, room)
        if num_tokens(block) <= budget:  # a fresh cut each try: not worth caching
            return block
        room -= 1
    return None


def messages_bound(messages: Sequence[Mapping[str, Any]], counted: Sequence[tuple[str, int]] = (),
                   allowance: CountingAllowance | None = None) -> int:
    """At least what ``message_fit_in`` would count for ``messages``, without encoding long
    texts; ``counted`` and ``allowance`` as for ``token_bound`` (one allowance for them all)."""
    allowance = allowance if allowance is not None else CountingAllowance()
    return sum(token_bound(str(m.get("content") or ""), counted=counted, allowance=allowance)
               + MESSAGE_OVERHEAD_TOKENS for m in messages)


def knowledge_blocks(chunks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every chunk as its numbered knowledge block, uncut."""
    return [_block_header(index, chunk) + _first(chunk, "content_with_weight", "content")
            for index, chunk in enumerate(chunks)]


def _counted_content(chunk: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The stored count belongs to the indexed text, ``content_with_weight``."""
    count, content = chunk.get("token_count"), chunk.get("content_with_weight")
    return [(str(content), int(count))] if count is not None and content else []


def counted_contents(chunks: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(text, token count) of the chunks whose count was stored when they were indexed
    (``token_count``), in order: what ``token_bound`` needs to bound a prompt of them closely."""
    return [pair for chunk in chunks for pair in _counted_content(chunk)]


def blocks_bound(chunks: Sequence[Mapping[str, Any]], allowance: CountingAllowance | None = None) -> int:
    """At least the tokens of ``knowledge_blocks(chunks)``, without encoding the chunks;
    ``allowance`` as for ``token_bound`` (one for all the blocks)."""
    allowance = allowance if allowance is not None else CountingAllowance()
    return sum(token_bound(block, counted=_counted_content(chunk), allowance=allowance)
               for block, chunk in zip(knowledge_blocks(chunks), chunks, strict=True))


def kb_prompt(chunks: Sequence[Mapping[str, Any]], max_tokens: int) -> list[str]:
    """Retrieved chunks as numbered knowledge blocks, best first, within ``max_tokens``.

    Block n is ``chunks[n]`` (``ID: n``), so an ``[ID:n]`` in the answer maps back to
    ``chunks[n]``. Blocks are added in rank order while they fit; the first one that does not
    fit is cut to the remaining budget (or dropped when too little would remain) and the rest
    are dropped, so the result covers exactly ``chunks[:len(result)]`` and the sum of the
    blocks' token counts is at most ``max_tokens``. Rendered fields: the document name
    (``docnm_kwd``/``document_name``), ``url`` and ``meta_fields`` when present, and the text
    (``content_with_weight``/``content``); scores, ids and vectors are not shown to the model.

    Blocks whose bound (``blocks_bound``: the chunks' stored counts, the headers' remembered
    ones) already fits are not encoded at all: with today's context windows that is nearly
    every answer, and counting was most of a prompt's cost.
    """
    whole = knowledge_blocks(chunks)
    if blocks_bound(chunks) <= max_tokens:
        return whole
    blocks: list[str] = []
    used = 0
    for index, chunk in enumerate(chunks):
        header, content = _block_header(index, chunk), _first(chunk, "content_with_weight", "content")
        block = header + content
        size = prompt_tokens(block)
        if used + size > max_tokens:
            cut = _truncated_block(header, content, max_tokens - used)
            if cut is not None:
                blocks.append(cut)
            break
        blocks.append(block)
        used += size
    return blocks


def join_knowledge(blocks: Sequence[str]) -> str:
    """The knowledge blocks as the one text substituted for ``{knowledge}``."""
    return KNOWLEDGE_SEPARATOR.join(blocks)


class _TokenCounts:
    """Token counts of message contents, each text encoded once per fitting: the fitting steps
    re-count the same (often long) system prompt several times."""

    def __init__(self) -> None:
        self._known: dict[str, int] = {}

    def cost(self, message: Mapping[str, Any]) -> int:
        """Tokens of one message, its ``MESSAGE_OVERHEAD_TOKENS`` included."""
        content = message["content"]
        if content not in self._known:
            self._known[content] = prompt_tokens(content)
        return self._known[content] + MESSAGE_OVERHEAD_TOKENS

    def total(self, messages: Sequence[Mapping[str, Any]]) -> int:
        return sum(self.cost(message) for message in messages)


def _drop_oldest_turns(
    counts: _TokenCounts, head: list[dict], history: list[dict], last: list[dict], max_tokens: int
) -> list[dict]:
    """History without its oldest turns until everything fits; it never starts with an answer
    whose question was dropped."""
    costs = [counts.cost(message) for message in history]
    room = max_tokens - counts.total(head) - counts.total(last)
    dropped, kept_tokens = 0, sum(costs)
    while dropped < len(history) and kept_tokens > room:
        kept_tokens -= costs[dropped]
        dropped += 1
        while dropped < len(history) and history[dropped]["role"] == "assistant":
            kept_tokens -= costs[dropped]
            dropped += 1
    return history[dropped:]


def _shrink_knowledge(
    counts: _TokenCounts, head: list[dict], knowledge: Sequence[str], room: int
) -> None:
    """Drop knowledge blocks from the tail (least relevant), keeping the first, until the system
    messages fit in ``room``."""
    joined = join_knowledge(knowledge)
    holder = next((m for m in head if joined and joined in m["content"]), None)
    if holder is None:
        return
    original = holder["content"]
    keep = len(knowledge)
    overflow = counts.total(head) - room
    while keep > 1 and overflow > 0:  # estimate from the blocks' own counts, then check exactly
        keep -= 1
        overflow -= prompt_tokens(knowledge[keep])
    while True:
        holder["content"] = original.replace(joined, join_knowledge(knowledge[:keep]), 1)
        if keep <= 1 or counts.total(head) <= room:
            return
        keep -= 1


def _cut_to_fit(counts: _TokenCounts, messages: list[dict], target: dict, max_tokens: int) -> None:
    """Cut ``target``'s content (keeping its start) so that all ``messages`` fit, if they can."""
    others = counts.total(messages) - counts.cost(target)
    target["content"] = _truncate_clean(target["content"], max_tokens - others - MESSAGE_OVERHEAD_TOKENS)


def message_fit_in(
    messages: Sequence[Mapping[str, Any]], max_tokens: int, knowledge: Sequence[str] = ()
) -> tuple[int, list[dict]]:
    """System prompt, history and last question fitted into ``max_tokens``; (tokens, messages).

    ``max_tokens`` is the budget for the prompt: the context window minus what the answer
    needs. The input is not modified. In order, until it fits:

    1. keep the leading system message(s) and the last message; drop the oldest turns of the
       history in between (an answer whose question is gone goes too);
    2. when ``knowledge`` (the blocks from ``kb_prompt`` that were put into the system prompt)
       is given, drop its blocks from the least relevant end, keeping the first;
    3. cut the system prompt or the last message (keeping its start): the system prompt first
       when it holds more than 80% of their tokens, else the last message, then the other.

    Counts include ``MESSAGE_OVERHEAD_TOKENS`` per message. If even empty messages do not fit
    (a budget below the per-message overhead), the count returned exceeds ``max_tokens``.
    """
    counts = _TokenCounts()
    fitted = [{**message, "content": str(message.get("content") or "")} for message in messages]
    if counts.total(fitted) <= max_tokens:
        return counts.total(fitted), fitted
    n_head = next((i for i, m in enumerate(fitted) if m.get("role") != "system"), len(fitted))
    head, history, last = fitted[:n_head], fitted[n_head:-1], fitted[n_head:][-1:]
    history = _drop_oldest_turns(counts, head, history, last, max_tokens)
    fitted = head + history + last
    if knowledge and counts.total(fitted) > max_tokens:
        _shrink_knowledge(counts, head, knowledge, max_tokens - counts.total(history) - counts.total(last))
    if counts.total(fitted) > max_tokens:
        system_tokens, last_tokens = counts.total(head), counts.total(last)
        order = head[::-1] + last
        if system_tokens <= SYSTEM_SHARE_CUT_FIRST * (system_tokens + last_tokens):
            order = last + head[::-1]
        for target in order:
            if counts.total(fitted) > max_tokens:
                _cut_to_fit(counts, fitted, target, max_tokens)
    return counts.total(fitted), fitted
