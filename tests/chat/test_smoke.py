"""End to end through ragflow-sdk: dataset with chunks → chat → session → ask, streamed and not."""

from __future__ import annotations

from ragflow_sdk import RAGFlow

from tests.chat.conftest import STUB_MODEL

FACTS = [
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Mount Fuji is the highest mountain in Japan at 3,776 metres.",
    "The Amazon river flows through Brazil, Peru and Colombia.",
]


def test_ragflow_sdk_chat_round_trip(live_server, stub_llm) -> None:
    stub_llm.configure(reply="The Eiffel Tower was completed in 1889 [ID:0].")
    client = RAGFlow(api_key=live_server.key(), base_url=live_server.url)
    dataset = client.create_dataset(name="facts")
    document = dataset.upload_documents([{"display_name": "facts.txt", "blob": b"placeholder"}])[0]
    for fact in FACTS:
        document.add_chunk(content=fact)

    chat = client.create_chat("geo", dataset_ids=[dataset.id])
    assert chat.llm.model_name == STUB_MODEL
    session = chat.create_session("first")
    streamed = list(session.ask("When was the Eiffel Tower completed?", stream=True))
    assert streamed, "no events"
    final = streamed[-1]
    assert "1889" in final.content and "[ID:0]" in final.content
    assert final.reference and final.reference[0]["content"] == FACTS[0]
    assert all(len(a.content) <= len(b.content) for a, b in zip(streamed, streamed[1:], strict=False))

    whole = list(session.ask("And Mount Fuji?", stream=False))[0]
    assert whole.content

    stored = chat.list_sessions(id=session.id)[0].messages
    assert [m["role"] for m in stored] == ["assistant", "user", "assistant", "user", "assistant"]
    assert stored[2]["reference"]["chunks"][0]["content"] == FACTS[0]
