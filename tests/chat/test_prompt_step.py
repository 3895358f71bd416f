"""The prompt step of an answer: without counting tokens when upper bounds show it all fits,
with tiktoken counts (off the loop) otherwise, and the same prompt either way."""

from __future__ import annotations

from dataclasses import dataclass

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


def counted(window: Window) -> tuple[int, str, list[dict]]:
    return DialogService._prompt(window, DEFAULT_PROMPT_CONFIG, CHUNKS, HISTORY, REQUEST)


def test_a_prompt_far_below_the_window_is_the_counted_one_with_an_upper_bound() -> None:
    window = Window(8192)
    fast = DialogService._uncounted_prompt(window, DEFAULT_PROMPT_CONFIG, CHUNKS, HISTORY, REQUEST, 500)
    assert fast is not None
    used, system, history = counted(window)
    assert fast[1:] == (system, history)
    assert "ID: 5" in system and "concise" in system.lower()
    assert fast[0] >= used == sum(num_tokens(m["content"]) + 4 for m in [{"content": system}, *history])


def test_near_the_window_or_the_answer_room_only_counting_decides() -> None:
    _, system, history = counted(Window(100_000))
    exact_bytes = sum(len(m["content"].encode()) + 4 for m in [{"content": system}, *history])
    tight = Window(exact_bytes + 10)  # the bound exceeds 95% of this window
    assert DialogService._uncounted_prompt(tight, DEFAULT_PROMPT_CONFIG, CHUNKS, HISTORY, REQUEST, 0) is None
    roomy = Window(100_000)
    assert DialogService._uncounted_prompt(roomy, DEFAULT_PROMPT_CONFIG, CHUNKS, HISTORY, REQUEST,
                                           100_000 - exact_bytes + 1) is None
    used, _, _ = counted(tight)  # counted, it still fits whole
    assert used < exact_bytes
