"""Turns stored in order on every metadata backend, when the next position is known and when
another turn took it first."""

from __future__ import annotations

from collections.abc import Callable

from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.models import Message
from api.db.services import chat_assistant_service, conversation_service, tenant_service


def test_interleaved_turns_keep_their_order_and_history(fresh_database_url: Callable[[str], str],
                                                         db_backend: str) -> None:
    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        upgrade(db)

        def seed() -> str:
            tenant = tenant_service.get_or_create_tenant("acme").id
            chat = chat_assistant_service.create(tenant, {"name": "helper"}, "stub-chat@OpenAI-API-Compatible")
            return conversation_service.create_session(tenant, chat["id"], "s", None, "Hi!")["id"]

        session = db.call(seed)
        first = db.call(conversation_service.start_turn, session, "first question")
        assert first.history == [{"role": "assistant", "content": "Hi!"},
                                 {"role": "user", "content": "first question"}]
        second = db.call(conversation_service.start_turn, session, "second question")  # before the first answer
        assert second.history[-2:] == [{"role": "user", "content": "first question"},
                                       {"role": "user", "content": "second question"}]
        # The first answer's expected place (right after its question) is the second question's now.
        db.call(conversation_service.finish_turn, first, "first answer", None, "complete", None)
        db.call(conversation_service.finish_turn, second, "second answer", None, "complete", None)
        third = db.call(conversation_service.start_turn, session, "third question")
        db.call(conversation_service.finish_turn, third, "third answer", None, "complete", None)

        stored = db.call(lambda: [(m.seq, m.role, m.content) for m in
                                  Message.select().where(Message.conversation_id == session).order_by(Message.seq)])
        assert stored == [(0, "assistant", "Hi!"), (1, "user", "first question"), (2, "user", "second question"),
                          (3, "assistant", "first answer"), (4, "assistant", "second answer"),
                          (5, "user", "third question"), (6, "assistant", "third answer")]
        assert third.history == [{"role": role, "content": content} for _, role, content in stored[:6]]
    finally:
        db.close()
