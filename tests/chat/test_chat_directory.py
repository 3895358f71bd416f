"""ChatDirectory: completions check the chat and the session without a database trip each time,
and never answer from a chat or session this process changed or deleted."""

from __future__ import annotations

import pytest

from api.db.migrate import upgrade
from api.db.models import Conversation, Message
from api.db.services import chat_assistant_service, chat_directory, conversation_service, tenant_service
from api.db.services.chat_directory import ChatDirectory
from api.errors import ApiError
from tests.chat.helpers import api, create_chat, session_messages, stream_completion


@pytest.fixture
def seeded(parts):
    """Two tenants; the first with a chat and a session of it."""
    upgrade(parts.db)

    def seed():
        acme = tenant_service.get_or_create_tenant("acme").id
        other = tenant_service.get_or_create_tenant("other").id
        chat = chat_assistant_service.create(acme, {"name": "helper"}, "stub-chat@OpenAI-API-Compatible")
        session = conversation_service.create_session(acme, chat["id"], "s", None, "")
        return acme, other, chat["id"], session["id"]

    return parts, *parts.db.call(seed)


@pytest.fixture
def trips(monkeypatch) -> list[tuple]:
    """The directory's database trips, recorded."""
    made: list[tuple] = []
    real = chat_directory._owned_chat_and_session

    def counting(*args):
        made.append(args)
        return real(*args)

    monkeypatch.setattr(chat_directory, "_owned_chat_and_session", counting)
    return made


async def test_a_checked_chat_and_session_are_remembered(seeded, trips) -> None:
    parts, acme, _, chat_id, session_id = seeded
    directory = ChatDirectory(parts.db)
    for _ in range(3):
        dialog = await directory.owned_chat_and_session(acme, chat_id, session_id)
        assert dialog.id == chat_id
    assert len(trips) == 1
    assert (await directory.owned_chat(acme, chat_id)).id == chat_id and len(trips) == 1


async def test_another_tenant_or_an_unknown_session_is_refused_though_the_chat_is_remembered(seeded, trips) -> None:
    parts, acme, other, chat_id, session_id = seeded
    directory = ChatDirectory(parts.db)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    with pytest.raises(ApiError, match="don't own the chat"):
        await directory.owned_chat_and_session(other, chat_id, None)
    with pytest.raises(ApiError, match="doesn't exist"):
        await directory.owned_chat_and_session(acme, chat_id, "0" * 32)
    with pytest.raises(ApiError, match="doesn't exist"):  # a refusal is not remembered as an answer
        await directory.owned_chat_and_session(acme, chat_id, "0" * 32)


async def test_forgetting_and_expiry_go_back_to_the_database(seeded, trips) -> None:
    parts, acme, _, chat_id, session_id = seeded
    directory = ChatDirectory(parts.db)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    directory.forget_sessions(acme, chat_id, [session_id])
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    directory.forget_chats(acme, None)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    assert len(trips) == 3

    never = ChatDirectory(parts.db, chat_seconds=0, session_seconds=0)
    await never.owned_chat_and_session(acme, chat_id, session_id)
    await never.owned_chat_and_session(acme, chat_id, session_id)
    assert len(trips) == 5


def test_an_update_or_a_deleted_session_takes_effect_on_the_next_question(live_server, stub_llm) -> None:
    key = live_server.key("acme")
    chat = create_chat(live_server, key, name="helper")
    session = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]
    stream_completion(live_server, key, chat["id"], {"question": "hello", "session_id": session["id"]})

    changed = api(live_server, key, "PUT", f"/api/v1/chats/{chat['id']}", {"prompt": {"prompt": "Reply as a pirate.", "variables": []}})
    assert changed["code"] == 0
    stream_completion(live_server, key, chat["id"], {"question": "again", "session_id": session["id"]})
    assert "pirate" in stub_llm.chat_requests[-1].body["messages"][0]["content"]
    assert len(session_messages(live_server, session["id"])) == 5  # the opener, two questions, two answers

    deleted = api(live_server, key, "DELETE", f"/api/v1/chats/{chat['id']}/sessions", {"ids": [session["id"]]})
    assert deleted["code"] == 0
    refused = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/completions",
                  {"question": "still there?", "session_id": session["id"], "stream": False})
    assert refused["code"] == 102 and "doesn't exist" in refused["message"]


def test_a_session_deleted_by_another_process_is_refused_though_still_remembered(live_server, stub_llm) -> None:
    """Another server process deleting a session does not tell this one's directory; the answer
    is then refused where the question is stored, in the API's envelope, and nothing is stored."""
    key = live_server.key("acme")
    chat = create_chat(live_server, key, name="helper")
    session = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]
    stream_completion(live_server, key, chat["id"], {"question": "hello", "session_id": session["id"]})
    live_server.parts.db.call(lambda: (Message.delete().where(Message.conversation_id == session["id"]).execute(),
                                       Conversation.delete().where(Conversation.id == session["id"]).execute()))
    asked = len(stub_llm.chat_requests)

    refused = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/completions",
                  {"question": "still there?", "session_id": session["id"], "stream": False})
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "and now?", "session_id": session["id"]})

    assert refused["code"] == 102 and "doesn't exist" in refused["message"]
    assert events[0].payload["code"] == 102 and "doesn't exist" in events[0].payload["message"]
    assert events[-1].payload["data"] is True
    assert len(stub_llm.chat_requests) == asked
    assert session_messages(live_server, session["id"]) == []


async def test_a_lookup_in_flight_while_its_chat_is_forgotten_does_not_remember_what_it_read(
        seeded, trips, monkeypatch) -> None:
    """The chat is read, then updated and forgotten before the read's answer arrives: that
    answer predates the update, so the next question must read the chat again."""
    parts, acme, _, chat_id, session_id = seeded
    directory = ChatDirectory(parts.db)
    real_run = parts.db.run

    async def forgotten_meanwhile(fn, *args, **kwargs):
        result = await real_run(fn, *args, **kwargs)
        directory.forget_chats(acme, [chat_id])  # the update lands while the read was in flight
        return result

    monkeypatch.setattr(parts.db, "run", forgotten_meanwhile)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    await directory.owned_chat(acme, chat_id)
    monkeypatch.setattr(parts.db, "run", real_run)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    await directory.owned_chat_and_session(acme, chat_id, session_id)

    assert len(trips) == 2  # the two in-flight lookups remembered nothing; the third did


async def test_sessions_removed_without_their_chat_named_are_forgotten_in_every_chat(seeded, trips) -> None:
    """/v1/conversation/rm names conversations only; their remembered ownership goes all the same."""
    parts, acme, _, chat_id, session_id = seeded
    directory = ChatDirectory(parts.db)
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    directory.forget_sessions("another-tenant", None, [session_id])
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    assert len(trips) == 1  # another tenant's removal touches nothing of acme's
    directory.forget_sessions(acme, None, [session_id])
    await directory.owned_chat_and_session(acme, chat_id, session_id)
    assert len(trips) == 2


async def test_a_chats_embedding_model_is_remembered_until_its_datasets_change(seeded, monkeypatch) -> None:
    """The model is read once, then remembered; a dataset deleted or changed through this
    process is read again at once (a deleted one: no model, so nothing to retrieve)."""
    from api.db.services import knowledgebase_service

    parts, acme, other, _, _ = seeded
    reads: list[tuple] = []
    real = chat_directory.embedding_model_of
    monkeypatch.setattr(chat_directory, "embedding_model_of", lambda *args: reads.append(args) or real(*args))
    kb_id = parts.db.call(knowledgebase_service.create, acme,
                          {"name": "kb", "embedding_model": "all-MiniLM-L6-v2@Builtin"})["id"]
    directory = ChatDirectory(parts.db)
    for _ in range(3):
        assert await directory.embedding_model(acme, [kb_id]) == "all-MiniLM-L6-v2@Builtin"
    assert await directory.embedding_model(other, [kb_id]) is None  # another tenant's dataset
    assert len(reads) == 2
    parts.db.call(knowledgebase_service.delete_many, acme, [kb_id], parts.doc_store, parts.storage)
    directory.forget_datasets(acme)
    assert await directory.embedding_model(acme, [kb_id]) is None and len(reads) == 3
    assert await directory.embedding_model(other, [kb_id]) is None and len(reads) == 3  # still remembered
