"""kb_prompt (numbered knowledge within a budget) and message_fit_in (conversation within a window)."""

from __future__ import annotations

import copy
import uuid

import pytest

from rag.prompts import build_system_prompt, join_knowledge, kb_prompt, message_fit_in, token_bound
from rag.prompts.context import MESSAGE_OVERHEAD_TOKENS
from rag.utils.token_utils import num_tokens, prompt_tokens


def chunk(text: str, name: str = "doc.txt", **extra: object) -> dict:
    return {"content_with_weight": text, "docnm_kwd": name, "chunk_id": "c", "similarity": 0.5, **extra}


def words(n: int, word: str = "alpha") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


# -- kb_prompt --------------------------------------------------------------------------------


def test_blocks_are_numbered_by_rank_with_title_and_content() -> None:
    chunks = [chunk("Paris is the capital of France.", "france.md"), chunk("Berlin is in Germany.", "de.md")]
    blocks = kb_prompt(chunks, 1000)
    assert len(blocks) == 2
    assert blocks[0].startswith("ID: 0\n") and blocks[1].startswith("ID: 1\n")
    assert "Title: france.md" in blocks[0] and blocks[0].endswith("Paris is the capital of France.")
    assert "Title: de.md" in blocks[1] and "Berlin" in blocks[1]
    assert "0.5" not in blocks[0]  # scores and ids are not shown to the model


def test_extra_fields_url_and_metadata_are_rendered_and_api_shaped_chunks_work() -> None:
    meta = {"author": "Ada", "year": 1843}
    block = kb_prompt([chunk("text", url="https://x.test/a", meta_fields=meta)], 500)[0]
    assert "URL: https://x.test/a" in block
    assert "author: Ada" in block and "year: 1843" in block
    api_shaped = {"content": "Quoted text.", "document_name": "api.pdf"}
    assert kb_prompt([api_shaped], 500) == ["ID: 0\n├── Title: api.pdf\n└── Content:\nQuoted text."]


def test_empty_chunks_give_no_blocks() -> None:
    assert kb_prompt([], 1000) == []


def test_budget_drops_the_tail_and_the_sum_fits() -> None:
    chunks = [chunk(words(100, f"w{i}_")) for i in range(10)]
    one = num_tokens(kb_prompt(chunks[:1], 10_000)[0])
    budget = int(one * 3.5)
    blocks = kb_prompt(chunks, budget)
    assert sum(num_tokens(b) for b in blocks) <= budget
    assert len(blocks) == 4  # three whole, the fourth cut to the remaining half
    assert blocks[3].startswith("ID: 3\n") and num_tokens(blocks[3]) < one
    assert all(block.startswith(f"ID: {n}\n") for n, block in enumerate(blocks))


def test_budget_smaller_than_one_chunk_cuts_that_chunk() -> None:
    chunks = [chunk(words(500)), chunk("second")]
    blocks = kb_prompt(chunks, 60)
    assert len(blocks) == 1
    assert num_tokens(blocks[0]) <= 60
    assert blocks[0].startswith("ID: 0\n") and "alpha0 alpha1" in blocks[0]


def test_budget_too_small_for_a_useful_fragment_gives_nothing() -> None:
    assert kb_prompt([chunk(words(500))], 12) == []
    assert kb_prompt([chunk(words(500))], 0) == []


def test_unicode_content_is_cut_on_a_character_boundary() -> None:
    text = "東京は日本の首都です。" * 80 + "😀" * 50
    blocks = kb_prompt([chunk(text, "日本.txt")], 80)
    assert len(blocks) == 1 and num_tokens(blocks[0]) <= 80
    assert "\ufffd" not in blocks[0]
    assert "Title: 日本.txt" in blocks[0]
    emoji = kb_prompt([chunk("😀" * 200, "e.txt")], 40)[0]
    assert "\ufffd" not in emoji and emoji.endswith("😀")


# -- message_fit_in ---------------------------------------------------------------------------


def conversation(turns: int, size: int = 50) -> list[dict]:
    messages = [{"role": "system", "content": "You are helpful."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + words(size, f"q{i}_")})
        messages.append({"role": "assistant", "content": f"answer {i} " + words(size, f"a{i}_")})
    messages.append({"role": "user", "content": "And the last question?"})
    return messages


def count(messages: list[dict]) -> int:
    return sum(num_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def test_fitting_messages_are_returned_unchanged_with_their_count() -> None:
    messages = conversation(2)
    used, fitted = message_fit_in(messages, 100_000)
    assert fitted == messages and used == count(messages)


def test_oldest_turns_are_dropped_first_keeping_system_and_last_question() -> None:
    messages = conversation(6)
    original = copy.deepcopy(messages)
    turn = count(messages[1:3])
    budget = count([messages[0], messages[-1]]) + 2 * turn + 5
    used, fitted = message_fit_in(messages, budget)
    assert messages == original  # the input is not modified
    assert used == count(fitted) <= budget
    assert fitted[0] == messages[0] and fitted[-1] == messages[-1]
    assert fitted[1:-1] == messages[-5:-1]  # the two newest turns, whole
    assert fitted[1]["role"] == "user"


def test_history_never_starts_with_an_orphan_answer() -> None:
    messages = conversation(3)
    budget = count(messages) - count(messages[1:2]) + 1  # only the first question needs to go
    _, fitted = message_fit_in(messages, budget)
    assert fitted[1]["role"] == "user"
    assert fitted[1] == messages[3]


def test_knowledge_blocks_are_dropped_from_the_least_relevant_end() -> None:
    blocks = kb_prompt([chunk(words(80, f"k{i}_")) for i in range(6)], 100_000)
    system = "Answer from this knowledge:\n" + join_knowledge(blocks) + "\nThe end. Cite [ID:n]."
    question = {"role": "user", "content": "What is k0_1?"}
    messages = [{"role": "system", "content": system}, *conversation(1)[1:3], question]
    budget = count([{"content": system}, question]) - 2 * num_tokens(blocks[0])
    used, fitted = message_fit_in(messages, budget, knowledge=blocks)
    assert used <= budget
    assert [m["role"] for m in fitted] == ["system", "user"]
    kept = fitted[0]["content"]
    assert kept.startswith("Answer from this knowledge:\nID: 0") and kept.endswith("\nThe end. Cite [ID:n].")
    assert "ID: 3" in kept and "ID: 4" not in kept and "ID: 5" not in kept
    assert fitted[1] == question


def test_long_question_is_cut_after_knowledge_is_down_to_one_block() -> None:
    blocks = kb_prompt([chunk(words(40, f"k{i}_")) for i in range(3)], 100_000)
    system = "Knowledge:\n" + join_knowledge(blocks)
    question = "Please summarise: " + words(2000)
    used, fitted = message_fit_in(
        [{"role": "system", "content": system}, {"role": "user", "content": question}], 800, knowledge=blocks
    )
    assert used == count(fitted) <= 800
    assert fitted[0]["content"] == "Knowledge:\n" + blocks[0]
    assert question.startswith(fitted[1]["content"]) and len(fitted[1]["content"]) < len(question)
    assert used >= 790  # cut to the budget, not far below it


def test_huge_system_prompt_is_cut_before_a_short_question() -> None:
    system = "Rules: " + words(3000)
    question = "Short question?"
    used, fitted = message_fit_in(
        [{"role": "system", "content": system}, {"role": "user", "content": question}], 500
    )
    assert used <= 500
    assert fitted[1]["content"] == question
    assert system.startswith(fitted[0]["content"])


def test_unicode_messages_are_cut_cleanly() -> None:
    question = "请总结：" + "数据库索引与检索增强生成。" * 400
    messages = [{"role": "system", "content": "助手"}, {"role": "user", "content": question}]
    used, fitted = message_fit_in(messages, 300)
    assert used <= 300 and "\ufffd" not in fitted[1]["content"]
    assert question.startswith(fitted[1]["content"])


def test_empty_and_none_contents_are_handled() -> None:
    assert message_fit_in([], 10) == (0, [])
    used, fitted = message_fit_in([{"role": "user", "content": None}], 10)
    assert fitted == [{"role": "user", "content": ""}] and used == MESSAGE_OVERHEAD_TOKENS


def test_knowledge_not_found_in_the_system_prompt_falls_back_to_cutting() -> None:
    blocks = kb_prompt([chunk(words(300))], 100_000)
    system = "Rules and an unrelated long text: " + words(1500, "r")
    question = {"role": "user", "content": "Why?"}
    used, fitted = message_fit_in([{"role": "system", "content": system}, question], 400, knowledge=blocks)
    assert used <= 400 and fitted[1] == question and system.startswith(fitted[0]["content"])


# -- counting without re-encoding ---------------------------------------------------------------

PIECE_EDGES = [
    "a\nb", "x.\n\nY", "  \n z", "end:\n(paren)", "ok\n\n\n", "\n\nlead", "数字\n中文", "emoji 😀\n😀x",
    "tab\n\tx", "crlf\r\nX\r\n\r\nY", "1\n2\n3", "'s\n's", "<|endoftext|>\nspecial", "ID: 0\n└── Content:\nText",
]


def test_prompt_tokens_counts_exactly_what_num_tokens_counts() -> None:
    prompt = build_system_prompt({}, kb_prompt([chunk(words(80)), chunk("Multi\nline\n\ncontent.")], 10_000),
                                 "friendly", {})
    for text in [*PIECE_EDGES, prompt, words(300)]:
        assert prompt_tokens(text) == num_tokens(text), text


def test_prompt_tokens_reuses_the_counts_of_pieces_seen_before(monkeypatch) -> None:
    from rag.utils import token_utils

    pieces = [f"{words(50, 'cached')}\n", "ID: 0\n", f"second line {words(30, 'more')}"]
    expected = num_tokens("".join(pieces))
    assert prompt_tokens("".join(pieces)) == expected
    monkeypatch.setattr(token_utils, "encoder", lambda *_: pytest.fail("encoded a piece counted before"))
    assert prompt_tokens(pieces[1] + pieces[0] + pieces[2]) == expected


@pytest.mark.parametrize("text", [*PIECE_EDGES, "plain ascii words", "ünïcödé ✓ 中文"])
def test_token_bound_is_never_below_the_count(text: str) -> None:
    assert token_bound(text) >= num_tokens(text)


@pytest.mark.parametrize("left", ["", "ID: 0\n└── Content:\n", "tail.", "x ", "line\n\n"])
@pytest.mark.parametrize("right", ["", "\n\nID: 1\n", ".\n\n", " next", "\n"])
@pytest.mark.parametrize("inner", PIECE_EDGES)
def test_a_bound_with_counted_spans_is_never_below_the_count(left: str, inner: str, right: str) -> None:
    text = left + inner + right
    assert token_bound(text, counted=[(inner, num_tokens(inner))]) >= num_tokens(text)


@pytest.mark.parametrize("inner", ["Yes", "Content", "ID: 0"])
def test_a_counted_text_found_earlier_than_where_it_stands_still_bounds(inner: str) -> None:
    """The search for a counted text may stop at an earlier occurrence (in a title, mid-word)."""
    text = f"ID: 0\n├── Title: {inner}sterday.pdf\n└── Content:\n{inner}\n\nID: 1\n"
    assert token_bound(text, counted=[(inner, num_tokens(inner))]) >= num_tokens(text)


def test_a_bound_shares_its_allowance_across_the_texts_of_a_prompt(monkeypatch) -> None:
    from rag.prompts.context import blocks_bound, messages_bound
    from rag.utils import token_utils

    nonce = uuid.uuid4().hex
    chunks = [chunk("\n".join(f"row {i} {nonce}" for i in range(100))) for _ in range(6)]
    allowance = token_utils.CountingAllowance(1000)
    blocks_bound(chunks, allowance)
    messages_bound([{"content": f"question {nonce}\nsecond line"}], allowance=allowance)
    assert 0 <= allowance.chars < 1000 - 900  # spent by the first block's lines, not renewed per text


def test_a_counted_span_is_bounded_by_its_count_not_by_its_bytes(monkeypatch) -> None:
    from rag.utils import token_utils

    long_chunk = words(400, "fresh")  # one long piece: unknown pieces that long are bounded by bytes
    text = f"Knowledge:\n{long_chunk}\n\nAnswer."
    exact = num_tokens(text)
    assert token_bound(text) > exact + 1000
    count = num_tokens(long_chunk)
    monkeypatch.setattr(token_utils, "encoder", lambda *_: pytest.fail("encoded the counted chunk"))
    assert exact <= token_bound(text, counted=[(long_chunk, count)]) <= exact + 2 * token_utils.SPAN_JOIN_SLACK


def test_a_bound_encodes_at_most_its_allowance_of_new_short_pieces(monkeypatch) -> None:
    """Bounds run on the event loop: a question of thousands of short lines is not encoded there."""
    from rag.utils import token_utils

    encoded: list[int] = []
    real = token_utils.encoder()

    class Recording:
        def encode(self, text: str, **options: object) -> list[int]:
            encoded.append(len(text))
            return real.encode(text, **options)

    question = "".join(f"line {i} of a {uuid.uuid4().hex} question\n" for i in range(3000))
    exact = num_tokens(question)
    monkeypatch.setattr(token_utils, "encoder", lambda *_: Recording())
    assert token_bound(question) >= exact
    assert 0 < sum(encoded) <= token_utils.BOUND_COUNTING_CHARS


def test_knowledge_within_its_bound_is_returned_whole_without_encoding(monkeypatch) -> None:
    from rag.prompts import context

    chunks = [chunk(words(40)), chunk("Zweiter Absatz über Größe.")]
    expected = kb_prompt(chunks, 10_000)
    monkeypatch.setattr(context, "prompt_tokens", lambda text: pytest.fail("counted tokens"))
    assert kb_prompt(chunks, sum(token_bound(b) for b in expected)) == expected
