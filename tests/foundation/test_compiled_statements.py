"""The hot writes' SQL, compiled by peewee once and reused: the same rows as peewee's own
statements, on every metadata backend, and never reused when its parameters would differ."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from peewee import IntegrityError

from api.db.compiled import StatementCache, insert_new, select_by_id, select_rows, update_by_id
from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.models import Conversation, Message, Usage


@pytest.fixture
def db(fresh_database_url: Callable[[str], str], db_backend: str):
    database = MetaDB(fresh_database_url(db_backend), max_connections=4)
    upgrade(database)
    yield database
    database.close()


def stored(model, row_id) -> dict:
    row = model.get_by_id(row_id).__data__
    return {k: v for k, v in row.items() if k not in ("id", "create_time", "update_time")}


def test_inserts_store_what_create_stores_and_reuse_their_sql(db, monkeypatch):
    cache = StatementCache()
    values = {"tenant_id": "t1", "conversation_id": "c1", "seq": 0, "role": "assistant", "content": "hi",
              "reference": {"chunks": [{"id": "x", "n": 1.5}]}, "status": "complete", "error": None}

    def peewee_must_not_build(*args, **kwargs):
        raise AssertionError("the statement was built again")

    def write_both(seq: int, reused: bool = False) -> tuple[dict, dict, Message]:
        with monkeypatch.context() as patch:
            if reused:
                patch.setattr(Message, "insert", peewee_must_not_build)
            ours = insert_new(Message, {**values, "seq": seq}, cache)
        theirs = Message.create(**{**values, "seq": seq + 1})
        return stored(Message, ours.id), stored(Message, theirs.id), ours

    ours, theirs, message = db.call(write_both, 0)
    assert ours == {**theirs, "seq": 0} and ours["reference"] == values["reference"]
    assert message.id and message.create_time and message.update_time and not message.is_dirty()
    assert all(sql for sql in cache.shapes().values()) and len(cache.shapes()) == 1

    ours, theirs, _ = db.call(write_both, 10, True)
    assert ours == {**theirs, "seq": 10}
    with pytest.raises(IntegrityError):  # the (conversation_id, seq) collision the turn writes rely on
        db.call(lambda: insert_new(Message, {**values, "seq": 10}, cache))

    usage = db.call(lambda: insert_new(Usage, {"tenant_id": "t1", "model": "m", "cost": None}, cache))
    assert db.call(stored, Usage, usage.id)["model"] == "m"


def test_updates_by_id_reuse_their_sql(db, monkeypatch):
    cache = StatementCache()
    first = db.call(lambda: Conversation.create(tenant_id="t1", name="a"))
    second = db.call(lambda: Conversation.create(tenant_id="t1", name="b"))
    db.call(update_by_id, Conversation, first.id, [("update_time", 123), ("name", "x")], cache)
    monkeypatch.setattr(Conversation, "update", lambda *a, **k: pytest.fail("the statement was built again"))
    db.call(update_by_id, Conversation, second.id, [("update_time", 456), ("name", "y")], cache)
    rows = db.call(lambda: {c.id: (c.update_time, c.name) for c in Conversation.select()})
    assert rows == {first.id: (123, "x"), second.id: (456, "y")}


def test_a_shape_whose_parameters_differ_from_peewees_is_never_reused(db):
    cache = StatementCache()
    conversation = db.call(lambda: Conversation.create(tenant_id="t1", name="a"))
    builds = []
    key = ("update_by_id", Conversation, ("name",), object)

    def build():
        builds.append(1)
        return Conversation.update(name="peewee's").where(Conversation.id == conversation.id)

    for _ in range(2):
        db.call(cache.execute, key, ["not what peewee sends", conversation.id], build)
    assert len(builds) == 2 and cache.shapes()[key] is None
    assert db.call(lambda: Conversation.get_by_id(conversation.id).name) == "peewee's"


def test_selects_read_what_peewee_reads_and_reuse_their_sql(db, monkeypatch):
    cache = StatementCache()
    first = db.call(lambda: Conversation.create(tenant_id="t1", name="a", system_prompt="ünïcode", client_id=None))
    second = db.call(lambda: Conversation.create(tenant_id="t2", name="b", user_id="u"))
    assert db.call(select_by_id, Conversation, first.id, cache).__data__ == \
        db.call(Conversation.get_by_id, first.id).__data__
    assert db.call(select_by_id, Conversation, "missing", cache) is None
    with monkeypatch.context() as patch:
        patch.setattr(Conversation, "select", lambda *a, **k: pytest.fail("the statement was built again"))
        found = db.call(select_by_id, Conversation, second.id, cache)
    assert found.__data__ == db.call(Conversation.get_by_id, second.id).__data__ and not found.is_dirty()

    db.call(lambda: [Message.create(tenant_id="t1", conversation_id=first.id, seq=seq, role=role, content=text)
                     for seq, role, text in [(1, "assistant", "b"), (0, "user", "a")]])

    def turns(conversation_id: str) -> list[tuple]:
        return select_rows("turns", Message, [conversation_id],
                           lambda: Message.select(Message.seq, Message.content)
                           .where(Message.conversation_id == conversation_id).order_by(Message.seq), cache)

    assert db.call(turns, first.id) == [(0, "a"), (1, "b")]
    with monkeypatch.context() as patch:
        patch.setattr(Message, "select", lambda *a, **k: pytest.fail("the statement was built again"))
        assert db.call(turns, second.id) == []
