"""The prompt step of an answer: without counting tokens when upper bounds show it all fits,
with tiktoken counts (off the loop) otherwise, and the same prompt either way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from api.db.services.chat_assistant_service import DEFAULT_PROMPT_CONFIG
from api.db.services.dialog_service import ChatRequest, DialogService
from rag.utils.token_utils import num_tokens


@dataclass
class Window:
    """What the prompt step reads of the chat model."""

    max_length: int
    is_extractive: bool = False


CHUNKS = [{"content_with_weight": f"Finding {i}: aspirin lowers the risk of stroke in trial {i}.",
           "docnm_kwd": f"paper{i}.txt"} for i in range(6)]
HISTORY = [{"role": "user", "content": "Does aspirin help?"}, {"role": "assistant", "content": "It can."},
           {"role": "user", "content": "For strokes too?"}]
REQUEST = ChatRequest(dialog=None, messages=HISTORY, tone="concise")


# The bounds are measured on a plain template: RAGFlow's default prompt indents ``{knowledge}``,
# which leaves the first chunk's line a few tokens looser than these tests' 1%.
CONFIG = {**DEFAULT_PROMPT_CONFIG,
          "system": "Answer from the knowledge base.\nHere is the knowledge base:\n{knowledge}\nThe above is the knowledge base."}

def counted(window: Window) -> tuple[int, str, list[dict]]:
    return DialogService._prompt(window, CONFIG, CHUNKS, HISTORY, REQUEST)


def test_a_prompt_far_below_the_window_is_the_counted_one_with_an_upper_bound() -> None:
    window = Window(8192)
    fast = DialogService._uncounted_prompt(window, CONFIG, CHUNKS, HISTORY, REQUEST, 500)
    assert fast is not None
    used, system, history = counted(window)
    assert fast[1:] == (system, history)
    assert "ID: 5" in system and "concise" in system.lower()
    assert fast[0] >= used == sum(num_tokens(m["content"]) + 4 for m in [{"content": system}, *history])


def fresh_chunks() -> list[dict]:
    """Chunks no earlier test counted (token counts of counted pieces are remembered), each
    longer than the pieces a bound counts by itself (``COUNTED_PIECE_CHARS``)."""
    nonce = uuid.uuid4().hex
    return [{**chunk, "content_with_weight": f"{chunk['content_with_weight']} Run {nonce}. " * 25}
            for chunk in CHUNKS]


def test_stored_token_counts_bound_chunks_never_seen_closely_without_encoding_them(monkeypatch) -> None:
    """Chunks carry the count stored when they were indexed: a prompt of chunks no question
    retrieved before is bounded within 1% of its count, so it is built on the loop
    even near the window."""
    from rag.utils import token_utils

    chunks = fresh_chunks()
    stored = [{**chunk, "token_count": num_tokens(chunk["content_with_weight"])} for chunk in chunks]
    used, system, history = DialogService._prompt(Window(100_000), CONFIG, stored, HISTORY, REQUEST)
    monkeypatch.setattr(token_utils, "PIECE_COUNTS", token_utils.PieceCounts())  # nothing of the chunks known
    counted(Window(100_000))  # the template lines and chunk headers are, as on a running server

    def refuse_chunks(piece: str, encoding: str) -> int:
        assert "Run" not in piece, f"encoded a chunk: {piece[:40]}"
        return len(token_utils.encoder(encoding).encode(piece, disallowed_special=()))

    monkeypatch.setattr(token_utils.PIECE_COUNTS, "count", refuse_chunks)
    window = Window(int(used / 0.6) + 100)  # knowledge may take 60% of it
    assert DialogService._uncounted_prompt(window, CONFIG, chunks, HISTORY, REQUEST, 0) is None
    fast = DialogService._uncounted_prompt(window, CONFIG, stored, HISTORY, REQUEST, 0)
    assert fast is not None and fast[1:] == (system, history)
    assert used <= fast[0] <= used * 1.01  # a join's pieces are bounded apart: a few tokens over


def test_near_the_window_or_the_answer_room_only_counting_decides() -> None:
    chunks = fresh_chunks()
    bound, _, _ = DialogService._uncounted_prompt(Window(100_000), CONFIG, chunks, HISTORY,
                                                  REQUEST, 0)  # the new chunks bounded by their bytes
    tight = Window(bound + 10)  # the bound exceeds 95% of this window
    assert DialogService._uncounted_prompt(tight, CONFIG, chunks, HISTORY, REQUEST, 0) is None
    roomy = Window(100_000)
    assert DialogService._uncounted_prompt(roomy, CONFIG, chunks, HISTORY, REQUEST,
                                           100_000 - bound + 1) is None
    used, _, _ = DialogService._prompt(tight, CONFIG, chunks, HISTORY, REQUEST)
    assert used < bound  # counted, it still fits whole


def test_once_its_pieces_were_counted_a_prompt_is_bounded_exactly_without_counting() -> None:
    """The chunks that answer one question answer the next: the second time the bound is the
    count itself, so a prompt near the window is built on the loop too."""
    chunks = fresh_chunks()
    bound, _, _ = DialogService._uncounted_prompt(Window(100_000), CONFIG, chunks, HISTORY,
                                                  REQUEST, 0)
    tight = Window(bound + 10)
    assert DialogService._uncounted_prompt(tight, CONFIG, chunks, HISTORY, REQUEST, 0) is None
    used, system, history = DialogService._prompt(tight, CONFIG, chunks, HISTORY, REQUEST)

    again = DialogService._uncounted_prompt(tight, CONFIG, chunks, HISTORY, REQUEST, 0)
    assert again is not None and again[1:] == (system, history)
    history_bytes = sum(len(m["content"].encode()) + 4 for m in history)
    assert used <= again[0] <= used + history_bytes  # exact but for the turns, never counted alone


def test_a_prompt_that_fits_by_lookups_and_bytes_encodes_nothing(monkeypatch) -> None:
    """Chunks of an index without stored counts, made of short lines (a table, say), are not
    encoded on the loop when their bytes already fit: short pieces are counted only to
    tighten a bound that does not fit otherwise."""
    from rag.utils import token_utils

    counted(Window(100_000))  # the template lines, headers and turns are remembered, as on a server
    nonce = uuid.uuid4().hex
    table = [{**chunk, "content_with_weight": "\n".join(f"| row {i} | {nonce} | cell |" for i in range(40))}
             for chunk in CHUNKS]
    monkeypatch.setattr(token_utils, "encoder", lambda *_: pytest.fail("encoded on the loop"))
    assert DialogService._uncounted_prompt(Window(100_000), CONFIG, table, HISTORY, REQUEST, 0)
