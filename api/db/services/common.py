"""Query helpers every service shares: tenant scoping, ordering and paging."""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import formatdate

from peewee import ModelSelect

from api.db.models import BaseModel
from api.errors import data_error


def ordered_page(query: ModelSelect, model: type[BaseModel], orderby: str, desc: bool, page: int,
                 page_size: int) -> ModelSelect:
    """Order by the requested time column (id breaks ties, so pages never overlap), then page."""
    column = getattr(model, orderby)
    order = (column.desc(), model.id.desc()) if desc else (column.asc(), model.id.asc())
    return query.order_by(*order).paginate(page, page_size)


def http_date(ms: int | None) -> str | None:
    """RFC 1123 date for a millisecond timestamp, the ``*_date`` fields RAGFlow clients show."""
    return None if ms is None else formatdate(ms / 1000, usegmt=True)


def require_all(asked: Iterable[str] | None, found: Iterable[str], what: str) -> None:
    """Refuse (102) when any asked id was not found among the caller's: bulk operations are
    all or nothing, so one foreign or unknown id changes nothing."""
    missing = sorted(set(asked or []) - set(found))
    if missing:
        raise data_error(f"{what}: {', '.join(missing)}.")
