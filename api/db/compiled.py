"""The hottest statements as SQL that peewee compiles once per statement shape and database kind.

Why: peewee builds a statement's SQL in Python every time it runs. A message insert costs
about 120 µs of that and a one-column update 60 µs, against 3 µs to execute the same SQL once
built (measured on SQLite). A chat answer makes several such writes in a database thread,
whose Python holds the GIL the event loop is waiting for. So the statements made for every
answer (reading the session and its turns; writing the turn's messages, the session's
``update_time`` and the usage row) reuse their SQL here.

Only what peewee itself would send is sent. The first time a shape is seen, peewee builds the
statement and that is executed. The SQL is kept only if the parameters computed here
(``Field.db_value`` of each value, in column order) equal the ones peewee produced. Otherwise
that shape always goes through peewee.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from peewee import Model

from api.db.models import BaseModel, now_ms

M = TypeVar("M", bound=Model)
ShapeKey = tuple[str, type[Model], tuple[str, ...], type]


class StatementCache:
    """SQL per statement shape (kind, model, columns, database class). Shapes that peewee would
    parameterise differently are remembered as ``None``, so they are checked only once."""

    def __init__(self) -> None:
        self._sql: dict[ShapeKey, str | None] = {}
        self._lock = threading.Lock()

    def execute(self, key: ShapeKey, params: list[Any], build: Callable[[], Any]) -> Any:
        """Run the statement of shape ``key`` with ``params`` and return the driver's cursor;
        ``build`` makes peewee's query for the first use of the shape."""
        database = key[1]._meta.database
        sql = self._sql.get(key)
        if sql is not None:
            return database.execute_sql(sql, params)
        built_sql, built_params = build().sql()
        if key not in self._sql:
            with self._lock:
                self._sql[key] = built_sql if list(built_params) == params else None
        return database.execute_sql(built_sql, built_params)

    def shapes(self) -> dict[ShapeKey, str | None]:
        """What is known (tests read it)."""
        return dict(self._sql)


def _database_class(model: type[Model]) -> type:
    database = model._meta.database
    return type(getattr(database, "obj", None) or database)  # through the DatabaseProxy


# Like functools.cache: a process-wide memo that nothing needs to replace (tests pass their own).
STATEMENTS = StatementCache()


def insert_new(model: type[M], values: dict[str, Any], cache: StatementCache = STATEMENTS) -> M:
    """``model.create(**values)`` with the SQL reused: the object is built the same way (its
    defaults applied, ``update_time`` stamped as ``BaseModel.save`` stamps it) and every field
    it holds is inserted."""
    instance = model(**values)
    if isinstance(instance, BaseModel):
        instance.update_time = now_ms()
    data = instance.__data__
    names = tuple(name for name in model._meta.sorted_field_names if name in data)
    fields = model._meta.fields
    params = [fields[name].db_value(data[name]) for name in names]
    key: ShapeKey = ("insert", model, names, _database_class(model))
    cache.execute(key, params, lambda: model.insert({fields[name]: data[name] for name in names}))
    instance._dirty.clear()
    return instance


def update_by_id(model: type[Model], row_id: Any, values: Sequence[tuple[str, Any]],
                 cache: StatementCache = STATEMENTS) -> None:
    """``model.update(**values).where(model.id == row_id).execute()`` with the SQL reused.
    ``values`` is ordered (name, value) pairs: the order is part of the statement's shape."""
    fields = model._meta.fields
    names = tuple(name for name, _ in values)
    primary_key = model._meta.primary_key
    params = [fields[name].db_value(value) for name, value in values] + [primary_key.db_value(row_id)]
    key: ShapeKey = ("update_by_id", model, names, _database_class(model))
    cache.execute(key, params,
                  lambda: model.update({fields[name]: value for name, value in values}).where(primary_key == row_id))


def select_by_id(model: type[M], row_id: Any, cache: StatementCache = STATEMENTS) -> M | None:
    """``model.get_or_none(model.id == row_id)`` with the SQL reused: every field selected, in
    the model's order, and converted as peewee converts it."""
    fields = model._meta.sorted_fields
    primary_key = model._meta.primary_key
    key: ShapeKey = ("select_by_id", model, tuple(field.name for field in fields), _database_class(model))
    rows = cache.execute(key, [primary_key.db_value(row_id)],
                         lambda: model.select(*fields).where(primary_key == row_id)).fetchall()
    if not rows:
        return None
    instance = model(__no_default__=1, **{f.name: f.python_value(v) for f, v in zip(fields, rows[0], strict=True)})
    instance._dirty.clear()
    return instance


def select_rows(name: str, model: type[Model], params: list[Any], build: Callable[[], Any],
                cache: StatementCache = STATEMENTS) -> list[tuple]:
    """The driver's rows of a fixed query (``name`` tells it apart; ``params`` are its
    parameters as the database receives them). Values come as the driver gives them, so keep
    it to columns peewee does not convert (text, integers)."""
    key: ShapeKey = (name, model, (), _database_class(model))
    return [tuple(row) for row in cache.execute(key, params, build).fetchall()]
