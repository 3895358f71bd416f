"""Turns stored in order on every metadata backend, when the next position is known and when
another turn took it first."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.models import Message
from api.db.services import chat_assistant_service, conversation_service, tenant_service
from tests.conftest import sql_traced


def new_session(opener: str) -> str:
    """A session of a new chat of tenant ``acme``, opened with ``opener`` (none when empty)."""
    tenant = tenant_service.get_or_create_tenant("acme").id
    chat = chat_assistant_service.create(tenant, {"name": "helper"}, "stub-chat@OpenAI-API-Compatible")
    return conversation_service.create_session(tenant, chat["id"], "s", None, opener)["id"]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "in-a-write-batch"])
def test_interleaved_turns_keep_their_order_and_history(fresh_database_url: Callable[[str], str],
                                                         db_backend: str, batched: bool) -> None:
    """``batched``: both answers are stored in one ``write_batch`` (as the server's write queue
    stores them), where the colliding one retries inside the batch's transaction."""
    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        upgrade(db)
        session = db.call(new_session, "Hi!")
        first = db.call(conversation_service.start_turn, session, "first question")
        assert first.history == [{"role": "assistant", "content": "Hi!"},
                                 {"role": "user", "content": "first question"}]
        second = db.call(conversation_service.start_turn, session, "second question")  # before the first answer
        assert second.history[-2:] == [{"role": "user", "content": "first question"},
                                       {"role": "user", "content": "second question"}]
        # The first answer's expected place (right after its question) is the second question's now.
        answers = [functools.partial(conversation_service.finish_turn, turn, f"{which} answer", None, "complete", None)
                   for turn, which in ((first, "first"), (second, "second"))]
        if batched:
            assert [ok for ok, _ in db.call(db.write_batch, answers)] == [True, True]
        else:
            for answer in answers:
                db.call(answer)
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


def test_a_sqlite_write_batch_stores_turns_without_a_savepoint_each(fresh_database_url: Callable[[str], str]) -> None:
    """Inside the batch's transaction SQLite undoes a colliding INSERT alone, so a turn needs no
    SAVEPOINT and RELEASE of its own (statements run in the worker thread that holds the GIL)."""
    db = MetaDB(fresh_database_url("sqlite"))
    try:
        upgrade(db)
        session = db.call(new_session, "")
        [(stored, turn)], statements = sql_traced(
            db, lambda: db.write_batch([functools.partial(conversation_service.start_turn, session, "question")]))
    finally:
        db.close()
    assert stored and turn.history == [{"role": "user", "content": "question"}]
    assert any(s.upper().startswith("INSERT") for s in statements)
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
