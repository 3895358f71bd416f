"""full_question and keyword_extraction against fake chat models; the str-or-.text adapter."""

from __future__ import annotations

import datetime

import pytest

from rag.llm.errors import APICallError
from rag.llm.types import ChatResult
from rag.prompts import chat_text, full_question, keyword_extraction, split_reasoning
from rag.prompts.generator import KEYWORD_TEMPERATURE, REFINE_TEMPERATURE


class FakeChat:
    """Answers every call with ``reply`` (or raises it) and records the calls."""

    def __init__(self, reply: object) -> None:
        self.reply = reply
        self.calls: list[tuple[str, list[dict], dict]] = []

    async def chat(self, system: str, history: list[dict], gen_conf: dict) -> object:
        self.calls.append((system, history, gen_conf))
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


MULTI_TURN = [
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "Who wrote Hamlet?"},
    {"role": "assistant", "content": "William Shakespeare."},
    {"role": "user", "content": "When was he born?"},
]


async def test_chat_text_accepts_str_and_result_objects_and_drops_reasoning() -> None:
    assert await chat_text(FakeChat("  plain  "), "s", [], {}) == "plain"
    result = ChatResult(text="from result", reasoning="hidden")
    assert await chat_text(FakeChat(result), "s", [], {}) == "from result"
    assert await chat_text(FakeChat("<think>let me see</think>The answer"), "s", [], {}) == "The answer"
    assert await chat_text(FakeChat("<think>cut off before the end"), "s", [], {}) == ""


def test_split_reasoning_is_the_model_layers() -> None:
    from rag.llm import reasoning

    assert split_reasoning is reasoning.split_reasoning
    assert split_reasoning("<think>plan</think>Answer") == ("Answer", "plan")


async def test_full_question_rewrites_with_the_conversation_and_dates() -> None:
    model = FakeChat(ChatResult(text="When was William Shakespeare born?"))
    question = await full_question(model, MULTI_TURN, today=datetime.date(2026, 3, 1))
    assert question == "When was William Shakespeare born?"
    (system, history, gen_conf), = model.calls
    assert gen_conf == {"temperature": REFINE_TEMPERATURE}
    assert "USER: Who wrote Hamlet?\nASSISTANT: William Shakespeare.\nUSER: When was he born?" in system
    assert "2026-03-01" in system and "2026-02-28" in system and "2026-03-02" in system
    assert history[-1]["role"] == "user"


@pytest.mark.parametrize(
    "reply", ['Question: "When was William Shakespeare born?"', "<think>he = Shakespeare</think>\n"
              "Output: When was William Shakespeare born?"],
)
async def test_full_question_cleans_labels_quotes_and_reasoning(reply: str) -> None:
    assert await full_question(FakeChat(reply), MULTI_TURN) == "When was William Shakespeare born?"


async def test_single_turn_question_is_returned_without_a_call() -> None:
    model = FakeChat("should not be used")
    assert await full_question(model, MULTI_TURN[:2]) == "Who wrote Hamlet?"
    assert await full_question(model, []) == ""
    assert model.calls == []


@pytest.mark.parametrize("failure", [APICallError("provider down"), RuntimeError("boom"), TimeoutError()])
async def test_full_question_falls_back_to_the_original_on_error(failure: Exception) -> None:
    assert await full_question(FakeChat(failure), MULTI_TURN) == "When was he born?"


async def test_full_question_falls_back_on_an_empty_rewrite() -> None:
    assert await full_question(FakeChat("<think>hmm</think>"), MULTI_TURN) == "When was he born?"


async def test_long_conversations_are_bounded_in_the_rewrite_prompt() -> None:
    messages = [{"role": r, "content": f"turn {i} " + "word " * 2000} for i, r in
                enumerate(["user", "assistant"] * 20)] + [{"role": "user", "content": "and then?"}]
    model = FakeChat("And then what happened?")
    await full_question(model, messages)
    system = model.calls[0][0]
    assert "turn 0 " not in system and "turn 39 " in system and "USER: and then?" in system
    assert len(system) < 40_000


async def test_keywords_are_parsed_from_a_comma_separated_reply() -> None:
    model = FakeChat("retrieval augmented generation, vector index, BM25, extra")
    keywords = await keyword_extraction(model, "How does RAG combine BM25 with a vector index?", topn=3)
    assert keywords == ["retrieval augmented generation", "vector index", "BM25"]
    (system, _history, gen_conf), = model.calls
    assert gen_conf == {"temperature": KEYWORD_TEMPERATURE}
    assert "How does RAG combine BM25 with a vector index?" in system and "3" in system


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Keywords: Paris, France; capital", ["Paris", "France", "capital"]),
        ("Here are the keywords:\n1. Paris\n2. France\n3. capital", ["Paris", "France", "capital"]),
        ("- \"Paris\"\n- **France**\n- capital.", ["Paris", "France", "capital"]),
        ("<think>The user asks about Paris.</think>Paris，法国、首都", ["Paris", "法国", "首都"]),
        ("```\nParis, paris, PARIS, France\n```", ["Paris", "France"]),
        ("Paris, , ,France", ["Paris", "France"]),
        ("Sure! I picked these because they capture the essence of the question well, Paris", ["Paris"]),
        ("", []),
    ],
)
async def test_keyword_replies_are_parsed_robustly(reply: str, expected: list[str]) -> None:
    assert await keyword_extraction(FakeChat(reply), "What is the capital of France?", topn=5) == expected


async def test_keyword_extraction_returns_nothing_on_error_or_empty_input() -> None:
    assert await keyword_extraction(FakeChat(APICallError("down")), "question") == []
    model = FakeChat("unused")
    assert await keyword_extraction(model, "   ") == []
    assert await keyword_extraction(model, "question", topn=0) == []
    assert model.calls == []
