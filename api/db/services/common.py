"""Query helpers every service shares: tenant scoping, ordering and paging."""

from __future__ import annotations

from email.utils import formatdate

from peewee import ModelSelect

from api.db.models import BaseModel


def ordered_page(query: ModelSelect, model: type[BaseModel], orderby: str, desc: bool, page: int,
                 page_size: int) -> ModelSelect:
    """Order by the requested time column (id breaks ties, so pages never overlap), then page."""
    column = getattr(model, orderby)
    order = (column.desc(), model.id.desc()) if desc else (column.asc(), model.id.asc())
    return query.order_by(*order).paginate(page, page_size)


def http_date(ms: int | None) -> str | None:
    """RFC 1123 date for a millisecond timestamp, the ``*_date`` fields RAGFlow clients show."""
    return None if ms is None else formatdate(ms / 1000, usegmt=True)
