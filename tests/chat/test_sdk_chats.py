"""ragflow-sdk 0.22.1, unchanged, against chats and sessions: the happy paths and the bad input."""

from __future__ import annotations

import pytest
from ragflow_sdk import Chat

from api.db.models import Knowledgebase
from tests.chat.conftest import STUB_MODEL
from tests.chat.helpers import FACTS, api, create_chat, dialog_row, sdk, seed_dataset, session_messages


def test_create_chat_defaults_and_custom_settings(live_server, stub_llm) -> None:
    client = sdk(live_server)
    dataset = seed_dataset(client)

    plain = client.create_chat("plain", dataset_ids=[dataset.id])
    assert plain.llm.model_name == STUB_MODEL
    assert (plain.llm.temperature, plain.llm.max_tokens) == (0.1, 512)
    # keywords_similarity_weight is the term side's weight: the SDK's 0.7 retrieves at w = 0.3
    assert plain.prompt.keywords_similarity_weight == pytest.approx(0.7)
    assert dialog_row(live_server, plain.id).vector_similarity_weight == pytest.approx(0.3)
    assert plain.prompt.top_n == 8  # what the SDK sends by default
    assert "{knowledge}" in plain.prompt.prompt
    assert plain.prompt.opener == "Hi! I'm your assistant. What can I do for you?"
    assert plain.prompt.empty_response == ""  # the SDK sends null: no canned answer, the model is asked
    assert plain.dataset_ids == [dataset.id]

    llm = Chat.LLM(client, {"model_name": STUB_MODEL, "temperature": 0.5, "max_tokens": 64})
    prompt = Chat.Prompt(client, {"prompt": "Answer as a pirate. {knowledge}", "keywords_similarity_weight": 0.25,
                                  "opener": "Ahoy!", "top_n": 3, "empty_response": "Nothing found."})
    custom = client.create_chat("custom", dataset_ids=[dataset.id], llm=llm, prompt=prompt)
    assert (custom.llm.temperature, custom.llm.max_tokens) == (0.5, 64)
    assert custom.prompt.prompt == "Answer as a pirate. {knowledge}"
    assert custom.prompt.keywords_similarity_weight == pytest.approx(0.25)
    assert dialog_row(live_server, custom.id).vector_similarity_weight == pytest.approx(0.75)
    assert (custom.prompt.opener, custom.prompt.top_n, custom.prompt.empty_response) == ("Ahoy!", 3, "Nothing found.")

    no_dataset = client.create_chat("solo")
    assert no_dataset.dataset_ids == []


def test_list_update_and_delete_chats(live_server, stub_llm) -> None:
    client = sdk(live_server)
    chats = [client.create_chat(f"chat-{i}") for i in range(5)]

    newest_first = client.list_chats(page=1, page_size=2)
    assert [c.name for c in newest_first] == ["chat-4", "chat-3"]
    assert [c.name for c in client.list_chats(page=3, page_size=2)] == ["chat-0"]
    assert [c.name for c in client.list_chats(desc=False, page_size=2)] == ["chat-0", "chat-1"]
    assert [c.id for c in client.list_chats(id=chats[2].id)] == [chats[2].id]
    assert [c.name for c in client.list_chats(name="chat-1")] == ["chat-1"]
    with pytest.raises(Exception, match="doesn't exist"):  # RAGFlow answers 102 for an unknown filter
        client.list_chats(name="nope")

    target = chats[0]
    target.update({"name": "renamed", "llm": {"temperature": 0.9},
                   "prompt": {"keywords_similarity_weight": 0.4, "prompt": "Be brief. {knowledge}"}})
    updated = client.list_chats(id=target.id)[0]
    assert updated.name == "renamed"
    assert updated.llm.temperature == pytest.approx(0.9)
    assert updated.llm.model_name == STUB_MODEL
    assert updated.prompt.keywords_similarity_weight == pytest.approx(0.4)
    assert updated.prompt.prompt == "Be brief. {knowledge}"
    assert dialog_row(live_server, target.id).vector_similarity_weight == pytest.approx(0.6)
    with pytest.raises(Exception, match="Duplicated"):
        target.update({"name": "chat-1"})

    session = chats[1].create_session("to go")
    client.delete_chats(ids=[chats[1].id, "0" * 32])  # as RAGFlow: the known id goes, the unknown one is reported
    assert len(client.list_chats()) == 4
    with pytest.raises(Exception, match="0{32}"):  # nothing deletable is an error
        client.delete_chats(ids=["0" * 32])
    client.delete_chats(ids=[chats[2].id])
    assert {c.name for c in client.list_chats()} == {"renamed", "chat-3", "chat-4"}
    assert session_messages(live_server, session.id) == []
    key = live_server.key()
    assert api(live_server, key, "GET", f"/api/v1/chats/{chats[1].id}/sessions")["code"] == 102


def test_sessions_through_the_sdk(live_server, stub_llm) -> None:
    stub_llm.configure(reply="The Eiffel Tower was completed in 1889 [ID:0].")
    client = sdk(live_server)
    dataset = seed_dataset(client)
    chat = client.create_chat("geo", dataset_ids=[dataset.id])

    session = chat.create_session("first")
    assert session.name == "first" and session.chat_id == chat.id
    assert session.messages[0]["role"] == "assistant"
    assert session.messages[0]["content"] == "Hi! I'm your assistant. What can I do for you?"

    streamed = list(session.ask("When was the Eiffel Tower completed?", stream=True))
    assert streamed[-1].content == "The Eiffel Tower was completed in 1889 [ID:0]."
    assert streamed[-1].reference[0]["content"] == FACTS[0]
    whole = list(session.ask("And the Eiffel Tower again?", stream=False))
    assert len(whole) == 1 and whole[0].content == "The Eiffel Tower was completed in 1889 [ID:0]."
    assert whole[0].reference[0]["document_name"] == "facts.txt"

    session.update({"name": "renamed"})
    other = chat.create_session("second")
    listed = chat.list_sessions()
    assert [s.name for s in listed] == ["second", "renamed"]
    assert [s.name for s in chat.list_sessions(page=2, page_size=1)] == ["renamed"]
    assert [s.id for s in chat.list_sessions(name="second")] == [other.id]
    messages = chat.list_sessions(id=session.id)[0].messages
    assert [m["role"] for m in messages] == ["assistant", "user", "assistant", "user", "assistant"]
    for answer in (messages[2], messages[4]):
        assert answer["reference"]["chunks"][0]["content"] == FACTS[0]
        assert answer["reference"]["doc_aggs"][0]["doc_name"] == "facts.txt"
    assert "reference" not in messages[1]

    chat.delete_sessions(ids=[other.id, "0" * 32])  # as RAGFlow: the known id goes, the unknown one is reported
    assert [s.id for s in chat.list_sessions()] == [session.id]
    chat.delete_sessions()
    assert chat.list_sessions() == []
    assert session_messages(live_server, session.id) == []


def test_completion_without_session_creates_one(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Hello there.")
    key = live_server.key()
    chat = create_chat(live_server, key, name="solo", prompt={"opener": "Welcome!"})
    reply = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/completions",
                {"question": "hi", "stream": False})
    assert reply["code"] == 0 and reply["data"]["answer"] == "Hello there."
    stored = session_messages(live_server, reply["data"]["session_id"])
    assert [(m.role, m.content) for m in stored] == [("assistant", "Welcome!"), ("user", "hi"),
                                                     ("assistant", "Hello there.")]
    assert stored[-1].id == reply["data"]["id"]


def test_bad_chat_input_is_refused(live_server, stub_llm) -> None:
    key = live_server.key()
    client = sdk(live_server)
    builtin = seed_dataset(client, name="builtin", facts=FACTS[:1])
    other_model = seed_dataset(client, name="other", facts=FACTS[1:2])
    live_server.parts.db.call(lambda: Knowledgebase.update(embd_id="stub-embed@OpenAI-API-Compatible")
                              .where(Knowledgebase.id == other_model.id).execute())

    def refused(body: dict, path: str = "/api/v1/chats", method: str = "POST") -> dict:
        reply = api(live_server, key, method, path, body)
        assert reply["code"] != 0, reply
        return reply

    assert refused({"name": "x", "dataset_ids": ["f" * 32]})["code"] == 102
    assert refused({"name": "x", "dataset_ids": [builtin.id, other_model.id]})["code"] == 102
    tone = refused({"name": "x", "prompt": {"tone": "sarcastic"}})
    assert "friendly" in tone["message"] and "professional" in tone["message"]
    missing = refused({"name": "x", "prompt": {"prompt": "Hello {knowledge}",
                                              "variables": [{"key": "knowledge", "optional": True},
                                                            {"key": "city", "optional": False}]}})
    assert missing["code"] == 102 and "city" in missing["message"]
    assert refused({"name": "x", "llm": {"model_name": "gpt-x@NoSuchFactory"}})["code"] == 102
    assert refused({"name": "x", "dataset_ids": [builtin.id], "llm": {"model_name": "gpt-x@NoSuchFactory"}}
                   )["code"] == 102
    assert api(live_server, key, "GET", "/api/v1/chats")["data"] == []

    chat = create_chat(live_server, key, name="ok", dataset_ids=[builtin.id])
    assert refused({"dataset_ids": [builtin.id, other_model.id]}, f"/api/v1/chats/{chat['id']}", "PUT")["code"] == 102
    assert refused({"prompt": {"tone": "sarcastic"}}, f"/api/v1/chats/{chat['id']}", "PUT")["code"] != 0
    assert api(live_server, key, "GET", "/api/v1/chats")["data"][0]["dataset_ids"] == [builtin.id]


def test_another_tenants_chats_and_sessions_are_invisible(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Mine.")
    mine, theirs = live_server.key("acme"), live_server.key("globex")
    chat = create_chat(live_server, mine, name="private")
    session = api(live_server, mine, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]
    their_chat = create_chat(live_server, theirs, name="theirs")

    assert [c["id"] for c in api(live_server, theirs, "GET", "/api/v1/chats")["data"]] == [their_chat["id"]]
    assert api(live_server, theirs, "GET", "/api/v1/chats", params={"id": chat["id"]})["code"] == 102
    base = f"/api/v1/chats/{chat['id']}"
    for method, path, body in [
        ("PUT", base, {"name": "stolen"}),
        ("GET", f"{base}/sessions", None),
        ("POST", f"{base}/sessions", {"name": "x"}),
        ("PUT", f"{base}/sessions/{session['id']}", {"name": "x"}),
        ("DELETE", f"{base}/sessions", {"ids": [session["id"]]}),
        ("POST", f"{base}/completions", {"question": "hi", "stream": False, "session_id": session["id"]}),
        ("DELETE", "/api/v1/chats", {"ids": [chat["id"]]}),
    ]:
        reply = api(live_server, theirs, method, path, body)
        assert reply["code"] == 102, (method, path, reply)
    # their own chat with my session id: still not found
    reply = api(live_server, theirs, "POST", f"/api/v1/chats/{their_chat['id']}/completions",
                {"question": "hi", "stream": False, "session_id": session["id"]})
    assert reply["code"] == 102
    assert stub_llm.chat_requests == []
    assert api(live_server, mine, "GET", "/api/v1/chats")["data"][0]["name"] == "private"
    assert len(api(live_server, mine, "GET", f"{base}/sessions")["data"]) == 1
