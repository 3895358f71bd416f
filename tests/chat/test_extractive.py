"""No LLM configured: chats default to the builtin extractive model, which quotes with citations."""

from __future__ import annotations

import pytest

from rag.llm.chat_model import EXTRACTIVE_MODEL
from tests.chat.helpers import FACTS, answers, api, create_chat, sdk, seed_dataset, stream_completion


@pytest.fixture
def settings(make_settings):
    return make_settings()  # no llm_model


def test_extractive_model_answers_with_citations(live_server, stub_llm) -> None:
    key = live_server.key()
    dataset = seed_dataset(sdk(live_server))
    chat = create_chat(live_server, key, name="quotes", dataset_ids=[dataset.id],
                       prompt={"refine_multiturn": True, "keyword": True})
    assert chat["llm"]["model_name"] == EXTRACTIVE_MODEL

    reply = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/completions",
                {"question": "Which is the highest mountain in Japan?", "stream": False})
    assert reply["code"] == 0, reply
    data = reply["data"]
    fuji = next(i for i, c in enumerate(data["reference"]["chunks"]) if c["content"] == FACTS[1])
    assert data["answer"].startswith(FACTS[1].rstrip("."))
    assert f"[ID:{fuji}]" in data["answer"]

    events, _ = stream_completion(live_server, key, chat["id"],
                                  {"question": "When was it completed, the Eiffel Tower?",
                                   "session_id": data["session_id"]})
    final = answers(events)[-1]
    eiffel = next(i for i, c in enumerate(final["reference"]["chunks"]) if c["content"] == FACTS[0])
    assert "1889" in final["answer"] and f"[ID:{eiffel}]" in final["answer"]
    assert events[-1].payload["data"] is True
    assert stub_llm.requests == []  # neither refine nor keywords went anywhere
