"""DialogService.chat behaviour, observed through what the stub LLM receives and what the API answers:
solo chat, empty_response, refine_multiturn, keywords, tones, citations, reasoning, context fitting,
step timings and usage rows."""

from __future__ import annotations

import pytest

from api.db.services.dialog_service import ChatRequest, DialogService
from rag.prompts import TONES
from rag.utils.token_utils import num_tokens
from tests.chat.helpers import (
    FACTS,
    answers,
    api,
    create_chat,
    dialog_row,
    run_on_server,
    sdk,
    seed_dataset,
    session_messages,
    stream_completion,
    usage_rows,
)

REFINE_MARK = "You rewrite the last question of a conversation"
KEYWORDS_MARK = "You are a text analyzer"


def _system_of(record) -> str:
    messages = record.body["messages"]
    return messages[0]["content"] if messages[0]["role"] == "system" else ""


def _ask(server, key: str, chat_id: str, question: str, session_id: str | None = None) -> dict:
    body = {"question": question, "stream": False, **({"session_id": session_id} if session_id else {})}
    reply = api(server, key, "POST", f"/api/v1/chats/{chat_id}/completions", body)
    assert reply["code"] == 0, reply
    return reply["data"]


def _chat_events(server, chat_id: str, messages: list[dict], **options) -> list:
    """DialogService.chat run directly on the server's loop, all its events."""
    dialog = dialog_row(server, chat_id)

    async def run() -> list:
        request = ChatRequest(dialog=dialog, messages=messages, **options)
        return [event async for event in DialogService(server.parts).chat(request)]

    return run_on_server(server, run())


@pytest.fixture
def seeded(live_server):
    """(key, dataset id) of a tenant whose dataset holds FACTS."""
    return live_server.key(), seed_dataset(sdk(live_server)).id


def test_solo_chat_without_datasets_uses_tone_and_history(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="solo", prompt={"prompt": "You are terse.", "tone": "friendly",
                                                                   "variables": []})
    stub_llm.configure(reply="Hello!")
    first = _ask(live_server, key, chat["id"], "hi")
    _ask(live_server, key, chat["id"], "and again", first["session_id"])
    assert first["answer"] == "Hello!" and first["reference"]["chunks"] == []
    last = stub_llm.chat_requests[-1].body["messages"]
    assert last[0]["content"].startswith("You are terse.")
    assert TONES["friendly"] in last[0]["content"]
    assert "[ID:" not in last[0]["content"]  # no knowledge, no citation rules
    assert [(m["role"], m["content"]) for m in last[1:]] == [("user", "hi"), ("assistant", "Hello!"),
                                                             ("user", "and again")]
    assert not stub_llm.requests_to("/embeddings")

    events = _chat_events(live_server, chat["id"], [{"role": "user", "content": "hi"}], tone="formal")
    assert TONES["formal"] in _system_of(stub_llm.chat_requests[-1])
    assert TONES["friendly"] not in _system_of(stub_llm.chat_requests[-1])
    assert "retrieval_ms" not in events[-1].timings and "first_token_ms" in events[-1].timings


def test_empty_response_is_answered_without_the_llm(live_server, stub_llm, seeded) -> None:
    key, dataset_id = seeded
    chat = create_chat(live_server, key, name="strict", dataset_ids=[dataset_id],
                       prompt={"similarity_threshold": 0.99, "empty_response": "Nothing found."})
    whole = _ask(live_server, key, chat["id"], "Who painted the Mona Lisa?")
    assert whole["answer"] == "Nothing found."
    assert whole["reference"]["total"] == 0
    events, _ = stream_completion(live_server, key, chat["id"],
                                  {"question": "And the Sistine Chapel?", "session_id": whole["session_id"]})
    assert [a["answer"] for a in answers(events)] == ["Nothing found."]
    assert events[-1].payload["data"] is True
    assert stub_llm.chat_requests == []
    assert [m.content for m in session_messages(live_server, whole["session_id"])][-1] == "Nothing found."


def test_refine_multiturn_and_keywords_call_the_llm_first(live_server, stub_llm, seeded) -> None:
    key, dataset_id = seeded
    chat = create_chat(live_server, key, name="refine", dataset_ids=[dataset_id],
                       prompt={"refine_multiturn": True, "similarity_threshold": 0.0})
    stub_llm.configure(reply="Eiffel Tower, Paris")
    first = _ask(live_server, key, chat["id"], "Where is the Eiffel Tower?")
    assert not any(REFINE_MARK in _system_of(r) for r in stub_llm.chat_requests), "nothing to refine on turn 1"
    _ask(live_server, key, chat["id"], "When was it completed?", first["session_id"])
    refine = [r for r in stub_llm.chat_requests if REFINE_MARK in _system_of(r)]
    assert len(refine) == 1
    assert "When was it completed?" in _system_of(refine[0]) and "Where is the Eiffel Tower?" in _system_of(refine[0])
    assert stub_llm.chat_requests[-1] is not refine[0]  # the answer came after the rewrite

    stub_llm.reset()
    stub_llm.configure(reply="Eiffel Tower, Paris")
    api(live_server, key, "PUT", f"/api/v1/chats/{chat['id']}", {"prompt": {"keyword": True}})
    events = _chat_events(live_server, chat["id"], [{"role": "user", "content": "Where is the tower?"},
                                                     {"role": "assistant", "content": "In Paris."},
                                                     {"role": "user", "content": "When was it completed?"}])
    systems = [_system_of(r) for r in stub_llm.chat_requests]
    assert [REFINE_MARK in s for s in systems] == [True, False, False]
    assert KEYWORDS_MARK in systems[1]
    assert "Eiffel Tower, Paris" in systems[1]  # keywords are taken from the refined question
    timings = events[-1].timings
    assert set(timings) >= {"refine_ms", "keywords_ms", "retrieval_ms", "prompt_ms", "first_token_ms"}
    assert all(value >= 0 for value in timings.values())


def test_tone_of_the_chat_reaches_the_system_prompt(live_server, stub_llm, seeded) -> None:
    key, dataset_id = seeded
    chat = create_chat(live_server, key, name="toned", dataset_ids=[dataset_id],
                       prompt={"tone": "empathetic", "similarity_threshold": 0.0})
    stub_llm.configure(reply="It was built in 1889.")
    _ask(live_server, key, chat["id"], "When was the Eiffel Tower completed?")
    system = _system_of(stub_llm.chat_requests[-1])
    assert TONES["empathetic"] in system
    assert FACTS[0] in system and "[ID:" in system


def test_citations_are_repaired_and_inserted(live_server, stub_llm, seeded) -> None:
    key, dataset_id = seeded
    chat = create_chat(live_server, key, name="cite", dataset_ids=[dataset_id], prompt={"similarity_threshold": 0.0})
    stub_llm.configure(reply="Paris has it (ID:0). Japan has Fuji 【ID:1】. South America has the Amazon [ID: 2].")
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "Tell me about the facts"})
    final = answers(events)[-1]
    assert final["answer"] == "Paris has it [ID:0]. Japan has Fuji [ID:1]. South America has the Amazon [ID:2]."
    assert all("(ID" not in a["answer"] and "【" not in a["answer"] for a in answers(events))
    stored = session_messages(live_server, final["session_id"])[-1]
    assert stored.content == final["answer"]

    stub_llm.configure(reply="Mount Fuji is the highest mountain in Japan.")
    whole = _ask(live_server, key, chat["id"], "What is the highest mountain in Japan?")
    fuji = next(i for i, c in enumerate(whole["reference"]["chunks"]) if c["content"] == FACTS[1])
    assert whole["answer"] == f"Mount Fuji is the highest mountain in Japan. [ID:{fuji}]"

    stub_llm.configure(reply="Fuji is tall [ID:7].")  # a chunk that was never retrieved
    assert "[ID:7]" not in _ask(live_server, key, chat["id"], "Fuji?")["answer"]
    stub_llm.configure(reply="Fuji is tall [ID:7] and old [ID:1]. " + " ".join(["more"] * 40),
                       tokens_per_second=200)
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "Fuji?"})
    texts = [a["answer"] for a in answers(events)[:-1]]
    assert len(texts) > 2 and all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert not any("[ID:7]" in text for text in texts) and "[ID:1]" in texts[-1]


@pytest.mark.parametrize("reasoning_format", ["think", "field"])
def test_reasoning_never_reaches_the_answer(live_server, stub_llm, reasoning_format) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="thinker")
    stub_llm.configure(reply="The answer is 42.", reasoning="secret musings about numbers",
                       reasoning_format=reasoning_format)
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "meaning of life?"})
    streamed = answers(events)
    assert streamed[-1]["answer"] == "The answer is 42."
    assert all("secret" not in a["answer"] and "think>" not in a["answer"] for a in streamed)
    whole = _ask(live_server, key, chat["id"], "again?", streamed[-1]["session_id"])
    assert whole["answer"] == "The answer is 42."
    stored = session_messages(live_server, whole["session_id"])
    assert all("secret" not in m.content and "think>" not in m.content for m in stored)


def test_long_history_is_fitted_into_the_context_window(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="long", llm={"max_tokens": 4000})
    stub_llm.configure(reply="Fine.")
    filler = " ".join(["lorem"] * 600)
    messages = []
    for turn in range(30):  # about 36k tokens, over four times the stub's 8192-token window
        messages += [{"role": "user", "content": f"question {turn} {filler}"},
                     {"role": "assistant", "content": f"answer {turn} {filler}"}]
    messages.append({"role": "user", "content": "And the last question?"})
    events = _chat_events(live_server, chat["id"], messages)
    assert events[-1].answer == "Fine."
    body = stub_llm.chat_requests[-1].body
    sent = body["messages"]
    prompt_tokens = sum(num_tokens(m["content"]) + 4 for m in sent)
    assert prompt_tokens <= 8192
    answer_room = body.get("max_tokens") or body.get("max_completion_tokens")
    assert 0 < answer_room < 4000 and prompt_tokens + answer_room <= 8192  # what the prompt left of the window
    assert sent[-1] == {"role": "user", "content": "And the last question?"}
    assert sent[0]["role"] == "system"
    kept = [m["content"].split()[1] for m in sent[1:-1]]
    assert kept and "0" not in kept and kept[-1] == "29", "the oldest turns go first"


def test_each_answer_writes_a_usage_row(live_server, stub_llm, seeded) -> None:
    key, dataset_id = seeded
    chat = create_chat(live_server, key, name="billed", dataset_ids=[dataset_id],
                       prompt={"similarity_threshold": 0.0, "keyword": True})
    stub_llm.configure(reply="Built in 1889 [ID:0].", first_token_delay=0.2)
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "When was the Eiffel Tower built?"})
    whole = _ask(live_server, key, chat["id"], "Again?", answers(events)[-1]["session_id"])
    stored = session_messages(live_server, whole["session_id"])
    rows = usage_rows(live_server, chat["id"])
    answer_rows = [r for r in rows if r.message_id in {stored[2].id, stored[4].id}]
    assert len(rows) == 4 and len(answer_rows) == 4  # keywords + answer, per turn
    for message in (stored[2], stored[4]):
        mine = [r for r in answer_rows if r.message_id == message.id]
        assert len(mine) == 2 and all(r.kind == "chat" and r.outcome == "ok" for r in mine)
        (row,) = [r for r in mine if r.retrieval_ms is not None]  # the answer; the other picked keywords
        assert row.conversation_id == whole["session_id"]
        assert row.prompt_tokens > 0 and row.completion_tokens == 4
        assert row.cost is None or row.cost >= 0
        assert row.latency_ms >= 200 and row.ttft_ms >= 200
        assert row.retrieval_ms > 0


def test_prompt_variables_come_from_the_completion_body(live_server, stub_llm) -> None:
    key = live_server.key()
    chat_id = create_chat(live_server, key, name="guide", prompt={
        "prompt": "You guide visitors of {city}.", "opener": "",
        "variables": [{"key": "knowledge", "optional": True}, {"key": "city", "optional": False}]})["id"]
    stub_llm.configure(reply="Welcome.")
    session = sdk(live_server).list_chats(id=chat_id)[0].create_session("trip")
    whole = list(session.ask("What should I see?", stream=False, city="Lyon"))[0]
    assert whole.content == "Welcome."
    assert _system_of(stub_llm.chat_requests[-1]).startswith("You guide visitors of Lyon.")

    refused = api(live_server, key, "POST", f"/api/v1/chats/{chat_id}/completions",
                  {"question": "And now?", "session_id": session.id})
    assert refused["code"] == 101 and "city" in refused["message"]
    assert len(stub_llm.chat_requests) == 1
    assert [m.role for m in session_messages(live_server, session.id)] == ["user", "assistant"]


def test_metrics_show_model_calls_tokens_steps_and_queue(live_server, stub_llm) -> None:
    import httpx
    from ragflow_sdk import RAGFlow

    stub_llm.configure(reply="Answer [ID:0].")
    client = RAGFlow(api_key=live_server.key(), base_url=live_server.url)
    dataset = client.create_dataset(name="metered")
    document = dataset.upload_documents([{"display_name": "m.txt", "blob": b"x"}])[0]
    document.add_chunk(content="Metrics are counted per model.")
    session = client.create_chat("metered", dataset_ids=[dataset.id]).create_session()
    list(session.ask("How are metrics counted?", stream=True))
    text = httpx.get(f"{live_server.url}/metrics").text
    assert 'ragline_llm_calls_total{kind="chat",model="stub-chat@OpenAI-API-Compatible",outcome="ok"}' in text
    assert 'ragline_llm_tokens_total{direction="completion",model="stub-chat@OpenAI-API-Compatible"}' in text
    assert 'ragline_llm_time_to_first_token_seconds_count{model="stub-chat@OpenAI-API-Compatible"}' in text
    assert 'ragline_chat_step_seconds_count{step="retrieval"}' in text
    assert 'ragline_chat_step_seconds_count{step="first_token"}' in text
    assert 'ragline_task_queue{state="queued"}' in text
